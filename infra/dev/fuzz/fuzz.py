#!/usr/bin/env python3
r"""Fuzzes a running ShiftCover server's `/graphql` with Schemathesis, as several callers.

Run by `infra/dev/fuzz.sh`, which makes the throwaway database, the server and the credentials
this needs; see README.md beside this file. Run alone:

    python fuzz.py --url http://127.0.0.1:PORT/graphql --schema schema.graphql \
        --database-url postgres://… [--partner-key sck_test_…] [--staff ROLE:EMAIL:PASSWORD]… \
        [--examples N] [--seconds S] [--seed N] [--server-pid PID] [--server-log FILE] \
        [--report FILE]

Schemathesis (through hypothesis-graphql) writes every query and mutation of the schema with
generated arguments and selections; each is sent as each caller, and every answer is judged:

- a failure: an HTTP 5xx, a body that is not a JSON object, a GraphQL error whose
  `extensions.code` is `INTERNAL_SERVER_ERROR`, no answer at all (the connection dropped or timed
  out), or the server process gone;
- fine: everything else, business errors included (`userErrors`, `BAD_USER_INPUT`,
  `UNAUTHENTICATED`, `FORBIDDEN`, `NOT_FOUND`, validation and limit errors, 429s).

Each failure is replayed and reduced (fields, arguments, list items and string lengths taken away
while it still fails the same way) and printed with the query and variables that reproduce it.
The exit code is 1 when any failure was seen, 2 when the fuzzer itself could not run.
"""

from __future__ import annotations

import argparse
import base64
import collections
import dataclasses
import datetime as dt
import http.cookiejar
import json
import os
import random
import re
import shlex
import subprocess
import sys
import time
import traceback
from typing import Any, Callable

import graphql
import hypothesis.configuration
import hypothesis.errors
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.graphql import nodes

# How long one request may take before it counts as a hang.
REQUEST_TIMEOUT_SECS = 30
# Examples of every operation as every caller before any gets more.
BREADTH_EXAMPLES = 10
# Seconds kept for the mutations that can end a credential, which run last.
ENDING_RESERVE_SECS = 8
# The least time a rerun gets after the fuzzer itself failed on an operation.
RERUN_SECS = 3
# Examples sent before an operation the caller is refused every time is left for the next one.
REFUSAL_PROBE = 3
# Codes that mean "not for this caller": the request stopped at the authorization check.
REFUSAL_CODES = {"UNAUTHENTICATED", "FORBIDDEN"}
# Codes of answers that may come before the resolver's own checks: an operation answered only with
# these was not reached.
NOT_REACHED_CODES = REFUSAL_CODES | {
    "GRAPHQL_VALIDATION_FAILED",
    "BAD_USER_INPUT",
    "QUERY_TOO_COMPLEX",
    "QUERY_TOO_DEEP",
    "RATE_LIMITED",
    "REQUEST_TOO_LARGE",
    "(no code)",
}
# Mutations that end the caller's own credential (or may): fuzzed last, after everything else.
CREDENTIAL_ENDING = [
    "disableStaffUser",
    "setPartnerStatus",
    "rotatePartnerApiKey",
    "revokePartnerApiKey",
    "signDriverOutEverywhere",
    "deleteAccount",
    "signOutEverywhere",
    "signOut",
    "staffSignOut",
]
# Reasons in a 401 that say the credential itself stopped working.
DEAD_CREDENTIAL_REASONS = {
    "SESSION_EXPIRED",
    "SESSION_REVOKED",
    "API_KEY_EXPIRED",
    "API_KEY_REVOKED",
    "ACCOUNT_DISABLED",
    "UNAUTHENTICATED",
}
# Prefixes of the typed ids inside global ids (`base64url("<Type>:<prefix>_<32 hex>")`), so that
# generated ids are often well-formed ones that name nothing, beside the real ids captured from
# answers and plain junk.
ID_PREFIXES = [
    "drv", "veh", "enr", "cvs", "clm", "clp", "dsp", "pdl", "plc", "whe", "whd", "pmt", "cset",
    "top", "rfd", "sev", "job", "ntf", "lac", "ltx", "stf", "prt", "key", "prd", "prv", "quo",
]  # fmt: skip

SIGN_IN_DRIVER = """
mutation RequestLoginCode($phone: String!) {
  requestLoginCode(input: { phone: $phone }) { phone userErrors { code message } }
}"""
VERIFY_DRIVER = """
mutation VerifyLoginCode($phone: String!, $code: String!) {
  verifyLoginCode(input: { phone: $phone, code: $code }) { token userErrors { code message } }
}"""
SIGN_IN_STAFF = """
mutation StaffSignIn($email: String!, $password: String!) {
  staffSignIn(input: { email: $email, password: $password }) {
    staff { role } userErrors { code message }
  }
}"""


def describe_error(e: BaseException) -> str:
    """An exception's type and first line, with those of the exceptions it groups (hypothesis's
    FlakyFailure holds the failures it saw)."""
    first_line = str(e).splitlines()[0] if str(e) else ""
    text = f"{type(e).__name__}: {first_line}"
    if isinstance(e, BaseExceptionGroup):
        text += " [" + "; ".join(describe_error(inner) for inner in e.exceptions) + "]"
    return text[:500]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- Scalars -------------------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def register_scalars(node_type_names: list[str]) -> None:
    """Strategies for the schema's own scalars, and for `ID`: mostly valid values, some junk
    (NUL characters included: the server must refuse them, not fail on them)."""
    characters = st.characters(codec="utf-8", min_codepoint=0)

    def text(max_size: int | None = None) -> st.SearchStrategy[str]:
        return st.text(alphabet=characters, max_size=max_size)

    junk_dates = st.sampled_from(
        ["", "0", "today", "2024-02-30", "2023-02-29", "2024-13-01", "2024-00-10", "0000-01-01",
         "-0001-01-01", "+275760-09-13", "99999-12-31", "2024-1-1", "2024-01-01T00:00:00Z",
         "1970-01-01 00:00", "9999-12-31T23:59:60Z", "2024-06-01T12:00:00+25:00"]
    )  # fmt: skip
    junk = st.one_of(junk_dates, text(max_size=24))
    dates = st.dates().map(lambda d: d.isoformat())
    date_values = st.one_of(dates, dates, dates, junk).map(nodes.String)
    offsets = st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=14)),
                               dt.timezone(dt.timedelta(hours=-12, minutes=-30))])  # fmt: skip
    datetimes = st.datetimes(timezones=offsets).map(lambda d: d.isoformat())
    near = st.integers(-400 * 86400, 400 * 86400).map(
        lambda s: (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=s)).isoformat()
    )
    datetime_values = st.one_of(datetimes, near, near, junk).map(nodes.String)

    name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
    leaves = st.one_of(
        st.just(nodes.Null),
        st.booleans().map(nodes.Boolean),
        st.integers().map(nodes.Int),
        st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
        text(max_size=24).map(nodes.String),
    )

    def _object(fields: dict[str, graphql.ValueNode]) -> graphql.ObjectValueNode:
        return nodes.Object(
            [graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=v) for k, v in fields.items()]
        )

    json_values = st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4).map(nodes.List),
            st.dictionaries(name, inner, max_size=4).map(_object),
        ),
        max_leaves=12,
    )

    types = st.sampled_from(node_type_names or ["Driver"])
    prefixes = st.sampled_from(ID_PREFIXES)
    typed = st.builds(lambda p, u: f"{p}_{u.hex}", prefixes, st.uuids())
    global_ids = st.builds(lambda t, i: _b64(f"{t}:{i}"), types, typed)
    odd_global_ids = st.builds(lambda t, s: _b64(f"{t}:{s}"), types, text(max_size=40))
    ids = st.one_of(global_ids, global_ids, odd_global_ids, typed, text(max_size=40)).map(nodes.String)

    # Int and String are built in, but their uniform draws rarely make sense to the server: a
    # random `first` is over the complexity limit, a random string is never a phone number. Half
    # of the draws are the usual ones, the other half small numbers, limits and likely words.
    ints = st.one_of(
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-3, 120),
        st.integers(-3, 120),
        st.sampled_from([-(2**31), 2**31 - 1, 1000, 9999, 2024, 2025, 2026, 2027, 100_000, 1_000_000]),
    ).map(nodes.Int)
    words = st.sampled_from(
        ["+447700100123", "+447900000001", "07700 100123", "+1 202 555 0100", "ops@shiftcover.example",
         "someone@example.com", "a@b", "SC26DMO", "AB12 CDE", "2026-01", "2026-12", "2025-13",
         "2026-01-01", "2026-06-01T12:00:00Z", "https://partner.example/hooks/shiftcover",
         "http://localhost:9/hook", "ftp://partner.example", "123456", "000000", "cover.started",
         "cover.ended", "cover.not_covered", "driver.unlinked", "sms", "email", "GBP", "fuzz",
         "DELETE", "%", "_", "%_%", "\\", "'; DROP TABLE drivers; --", "Zoë O'Brien", "名前",
         "\u202etxt", "😀", " ", "x" * 501, "x" * 5000]
    )  # fmt: skip
    strings = st.one_of(text(), text(max_size=8), words, words).map(nodes.String)
    schemathesis.graphql.scalar("Int", ints)
    schemathesis.graphql.scalar("String", strings)
    schemathesis.graphql.scalar("Date", date_values)
    schemathesis.graphql.scalar("DateTime", datetime_values)
    schemathesis.graphql.scalar("JSON", json_values)
    schemathesis.graphql.scalar("ID", ids)


# --- Judging answers -----------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """What one request got back, judged."""

    failure: str | None = None  # the failure kind, None when the answer is fine
    detail: str = ""
    status: int | None = None
    codes: list[str] = dataclasses.field(default_factory=list)
    refused: bool = False  # stopped at the authorization check
    dead_credential: bool = False  # the 401 that says the credential no longer works
    reached: bool = False  # answered past the authorization check
    body: Any = None
    request_id: str = ""
    log_lines: list[str] = dataclasses.field(default_factory=list)


def judge(response: Any, request_id: str) -> Outcome:
    """Judges an answer (anything with `status_code` and `content`)."""
    out = Outcome(status=response.status_code, request_id=request_id)
    text = response.content.decode("utf-8", "replace")
    if response.status_code >= 500:
        out.failure, out.detail = "http-5xx", f"HTTP {response.status_code}: {text[:300]}"
        return out
    try:
        body = json.loads(response.content)
    except ValueError:
        out.failure = "not-json"
        out.detail = f"HTTP {response.status_code}, {len(response.content)} bytes: {text[:300]!r}"
        return out
    if not isinstance(body, dict):
        out.failure, out.detail = "not-json", f"a JSON {type(body).__name__}, not an object: {text[:300]}"
        return out
    out.body = body
    errors = body.get("errors") or []
    for error in errors:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        code = extensions.get("code") if isinstance(extensions, dict) else None
        out.codes.append(code if isinstance(code, str) else "(no code)")
        if code == "INTERNAL_SERVER_ERROR":
            out.failure = "internal-error"
            out.detail = json.dumps(error)[:400]
        if response.status_code == 401 and isinstance(extensions, dict):
            if extensions.get("reason") in DEAD_CREDENTIAL_REASONS or code == "UNAUTHENTICATED":
                out.dead_credential = True
    out.refused = bool(errors) and all(c in REFUSAL_CODES for c in out.codes)
    data = body.get("data")
    out.reached = (not errors and isinstance(data, dict)) or any(c not in NOT_REACHED_CODES for c in out.codes)
    if not errors and isinstance(data, dict):
        out.codes.append("ok")
        for value in data.values():
            if isinstance(value, dict) and value.get("userErrors"):
                out.codes[-1] = "userErrors"
    return out


# --- Callers -------------------------------------------------------------------------------------


class Caller:
    """One way of calling the API: its headers, and how to get a fresh credential.

    `make(n)` returns the headers of the n-th credential (0: the one the caller starts with).
    Mutations that can end the caller's credential run last; when one does, the next operation
    gets a fresh credential. `spares` are made before any fuzzing starts, because sign-in limits
    could refuse making them later (anonymous fuzzing of `requestLoginCode` spends the
    per-address quota)."""

    def __init__(self, name: str, make: Callable[[int], dict[str, str]] | None = None, spares: int = 0):
        self.name = name
        self._make = make
        self._made = 0
        self._want_spares = spares
        self.spares: list[dict[str, str]] = []
        self.headers: dict[str, str] = {}
        self.renewals = 0
        self.dead = False
        self.stale = False  # the credential ended; get a fresh one before the next operation

    def _new(self) -> dict[str, str]:
        assert self._make is not None
        headers = self._make(self._made)
        self._made += 1
        return headers

    def prepare(self) -> None:
        if self._make is not None:
            self.headers = self._new()
            self.spares = [self._new() for _ in range(self._want_spares)]

    def fresh(self) -> None:
        """Moves to a spare credential, else makes one; marks the caller dead when it cannot."""
        if self._make is None:
            return
        if self.spares:
            self.headers = self.spares.pop(0)
            return
        if self.renewals >= 4:
            self.dead = True
            return
        self.renewals += 1
        try:
            self.headers = self._new()
        except Exception as e:  # noqa: BLE001 - any failure to sign in ends this caller's run
            log(f"    {self.name}: no fresh credential ({e}); its remaining operations are skipped")
            self.dead = True


class Api:
    """Plain requests to the server (sign-in, replays), counted with the fuzzer's own."""

    def __init__(self, url: str, stats: Stats):
        self.url = url
        self.session = requests.Session()
        # Credentials travel only in the headers each caller sets: a staff cookie kept by the
        # session would turn every later request into that staff user's.
        self.session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self.stats = stats

    def post(self, body: dict, headers: dict[str, str] | None = None, request_id: str = "") -> requests.Response:
        self.stats.requests += 1
        h = {"content-type": "application/json", **(headers or {})}
        if request_id:
            h["x-request-id"] = request_id
        return self.session.post(self.url, data=json.dumps(body), headers=h, timeout=REQUEST_TIMEOUT_SECS)


def psql(database_url: str, sql: str) -> str:
    return subprocess.run(
        ["psql", database_url, "-qAtc", sql], check=True, capture_output=True, text=True
    ).stdout.strip()


def latest_sms_code(database_url: str, phone: str) -> str:
    """The six-digit code in the newest SMS to `phone`: its outbox job's body, else the recorded
    notification (the server is run without workers, so nothing is really sent)."""
    if not re.fullmatch(r"\+[0-9]{6,15}", phone):
        raise ValueError(f"not an E.164 phone: {phone}")
    body = psql(
        database_url,
        f"SELECT payload->>'body' FROM outbox_jobs WHERE payload->>'to' = '{phone}' "
        "AND payload ? 'body' ORDER BY created_at DESC, id DESC LIMIT 1",
    ) or psql(
        database_url,
        f"SELECT body_text FROM notifications WHERE recipient = '{phone}' AND channel = 'sms' "
        "ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    match = re.search(r"code is (\d{6})", body)
    if not match:
        raise RuntimeError(f"no sign-in code in the newest SMS to {phone}: {body!r}")
    return match.group(1)


def driver_phone(n: int, first: str) -> str:
    """The phone of the n-th driver credential: the given one, then new drivers' (valid UK mobiles)."""
    return first if n == 0 else f"+447900{random.SystemRandom().randrange(10**6):06d}"


def driver_sign_in(api: Api, database_url: str, phone: str) -> dict[str, str]:
    sent = api.post({"query": SIGN_IN_DRIVER, "variables": {"phone": phone}}).json()
    errors = sent.get("errors") or sent["data"]["requestLoginCode"]["userErrors"]
    if errors:
        raise RuntimeError(f"requestLoginCode: {errors}")
    code = latest_sms_code(database_url, phone)
    verified = api.post({"query": VERIFY_DRIVER, "variables": {"phone": phone, "code": code}}).json()
    payload = (verified.get("data") or {}).get("verifyLoginCode") or {}
    if not payload.get("token"):
        raise RuntimeError(f"verifyLoginCode: {verified}")
    return {"authorization": f"Bearer {payload['token']}"}


def staff_sign_in(api: Api, email: str, password: str) -> dict[str, str]:
    res = api.post({"query": SIGN_IN_STAFF, "variables": {"email": email, "password": password}})
    payload = ((res.json().get("data") or {}).get("staffSignIn")) or {}
    match = re.search(r"shiftcover_staff=([^;]+)", res.headers.get("set-cookie", ""))
    cookie = match.group(1) if match else None
    if not cookie or payload.get("userErrors"):
        raise RuntimeError(f"staffSignIn: {res.text[:300]}")
    return {"cookie": f"shiftcover_staff={cookie}"}


# --- Statistics and failures ---------------------------------------------------------------------


@dataclasses.dataclass
class Failure:
    kind: str
    caller: str
    operation: str
    detail: str
    query: str
    headers: dict[str, str]
    request_id: str
    log_lines: list[str] = dataclasses.field(default_factory=list)
    reproduced: bool | None = None
    original_size: int = 0
    reduce_requests: int = 0
    count: int = 1


class Stats:
    def __init__(self) -> None:
        self.requests = 0  # every HTTP request: fuzzing, sign-in and replays
        self.replays = 0
        self.by_caller: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.codes: collections.Counter = collections.Counter()
        self.fuzzed: dict[str, set[str]] = collections.defaultdict(set)
        self.reached: dict[str, set[str]] = collections.defaultdict(set)
        self.closed: dict[str, set[str]] = collections.defaultdict(set)
        self.skipped_for_time: list[tuple[str, str]] = []
        self.time_capped: list[tuple[str, str, str]] = []  # (phase, caller, operation) cut short
        self.examples: collections.Counter = collections.Counter()
        self.skipped_dead: list[tuple[str, str]] = []
        self.renewed: list[tuple[str, str]] = []
        self.failures: dict[tuple, Failure] = {}
        self.slowest: list[tuple[float, str, str]] = []
        # The fuzzer's own problems: (caller, operation, mode, error, recovered by a rerun).
        self.fuzzer_errors: list[tuple[str, str, str, str, bool]] = []


class ServerLog:
    """The server's log file, read from an offset, for the lines about one request."""

    def __init__(self, path: str | None):
        self.path = path

    def offset(self) -> int:
        try:
            return os.path.getsize(self.path) if self.path else 0
        except OSError:
            return 0

    def lines_since(self, offset: int, request_id: str) -> list[str]:
        if not self.path:
            return []
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                text = f.read(2_000_000).decode("utf-8", "replace")
        except OSError:
            return []
        found = []
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if request_id and request_id in line and '"level":"INFO"' not in line:
                found.append(_summarise_log_line(line))
            elif "panicked at" in line:
                found.append(" ".join(lines[i : i + 2])[:700])
        return found[:8]


def _summarise_log_line(line: str) -> str:
    """`LEVEL message key=value…` of a JSON log line, without the request span."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line[:700]
    if not isinstance(entry, dict):
        return line[:700]
    parts = [str(entry.get("level", "")), str(entry.get("message", ""))]
    for key, value in entry.items():
        if key not in ("timestamp", "level", "message", "span", "spans", "target", "request_id"):
            parts.append(f"{key}={value}")
    return " ".join(parts)[:700]


# --- Reducing a failing query --------------------------------------------------------------------


def _replace(node: Any, **changes: Any) -> Any:
    """A copy of an AST node with some fields replaced (nodes are immutable in graphql-core 3.3)."""
    return type(node)(**{**{key: getattr(node, key) for key in node.keys}, **changes})


# An edit: (path from the root to a node, what to do to it). What to do is `("drop", attr, i)`
# (take away item i of a list attribute: a selection, an argument, an input object field, a list
# item) or `("text", how)` for a string value: "x", "head" (first half), "tail" (second half) or
# the index of one character to take away (short strings only).
Edit = tuple[tuple, tuple]


def _edits(doc: graphql.DocumentNode) -> list[Edit]:
    """Every edit that makes the document smaller, the ones that take away most first."""
    coarse: list[Edit] = []
    selections: list[Edit] = []
    texts: list[Edit] = []

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, graphql.FieldNode) and node.arguments:
            coarse.extend((path, ("drop", "arguments", i)) for i in range(len(node.arguments)))
        if isinstance(node, graphql.ObjectValueNode) and node.fields:
            coarse.extend((path, ("drop", "fields", i)) for i in range(len(node.fields)))
        if isinstance(node, graphql.ListValueNode) and node.values:
            coarse.extend((path, ("drop", "values", i)) for i in range(len(node.values)))
        if isinstance(node, graphql.SelectionSetNode) and len(node.selections) > 1:
            selections.extend((path, ("drop", "selections", i)) for i in range(len(node.selections)))
        if isinstance(node, graphql.StringValueNode) and node.value not in ("", "x"):
            texts.append((path, ("text", "x")))
            if len(node.value) > 1:
                texts.extend([(path, ("text", "head")), (path, ("text", "tail"))])
            if 1 < len(node.value) <= 8:
                texts.extend((path, ("text", i)) for i in range(len(node.value)))
        for key in node.keys:
            child = getattr(node, key, None)
            if isinstance(child, graphql.Node):
                walk(child, (*path, (key, None)))
            elif isinstance(child, (list, tuple)):
                for i, item in enumerate(child):
                    if isinstance(item, graphql.Node):
                        walk(item, (*path, (key, i)))

    walk(doc, ())
    return coarse + selections + texts


def _edited(doc: graphql.DocumentNode, edit: Edit) -> graphql.DocumentNode:
    """The document with `edit` made."""
    path, what = edit

    def change(node: Any) -> Any:
        if what[0] == "drop":
            _, attr, index = what
            items = list(getattr(node, attr))
            del items[index]
            return _replace(node, **{attr: tuple(items)})
        how, value = what[1], node.value
        if how == "x":
            return _replace(node, value="x", block=False)
        if how == "head":
            return _replace(node, value=value[: len(value) // 2])
        if how == "tail":
            return _replace(node, value=value[len(value) // 2 :])
        return _replace(node, value=value[:how] + value[how + 1 :])

    def rebuild(node: Any, rest: tuple) -> Any:
        if not rest:
            return change(node)
        (key, i), tail = rest[0], rest[1:]
        child = getattr(node, key)
        if i is None:
            return _replace(node, **{key: rebuild(child, tail)})
        items = list(child)
        items[i] = rebuild(items[i], tail)
        return _replace(node, **{key: tuple(items)})

    return rebuild(doc, path)


def reduce_query(query: str, still_fails: Callable[[str], bool], budget: Callable[[], bool]) -> str:
    """The smallest query found that `still_fails`, by greedy edits while `budget()` allows."""
    try:
        doc = graphql.parse(query)
    except graphql.GraphQLError:
        return query
    best, tried = query, {query}
    index, progress = 0, False
    while budget():
        edits = _edits(doc)
        if index >= len(edits):
            if not progress:
                break
            index, progress = 0, False
            continue
        candidate = _edited(doc, edits[index])
        text = graphql.print_ast(candidate)
        if text in tried:
            index += 1
            continue
        tried.add(text)
        if still_fails(text):
            # The edits after this one moved up by one or more; keep the index.
            doc, best, progress = candidate, text, True
        else:
            index += 1
    return best


# --- The run -------------------------------------------------------------------------------------


class _Stop(Exception):
    """Ends the examples of one operation early (refused every time, out of time, caller gone)."""


class Fuzzer:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.stats = Stats()
        self.api = Api(args.url, self.stats)
        self.server_log = ServerLog(args.server_log)
        self.seq = 0
        self.rng = random.Random(args.seed)
        self.server_gone = False

    # Sending and judging ---------------------------------------------------------------------

    def server_alive(self, grace: float = 0.0) -> bool:
        """Whether the server process still runs; with `grace`, a process exiting within that
        many seconds counts as gone (a dropped connection comes before the exit is visible)."""
        until = time.monotonic() + grace
        while self._process_running():
            if time.monotonic() >= until:
                return True
            time.sleep(0.1)
        return False

    def _process_running(self) -> bool:
        if not self.args.server_pid:
            return True
        try:
            os.kill(self.args.server_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:  # a zombie is gone too
            with open(f"/proc/{self.args.server_pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] != "Z"
        except OSError:
            return True

    def send(self, caller: Caller, operation: str, call: Callable[[dict[str, str]], Any], replay: bool = False) -> Outcome:
        """Sends one request through `call(headers)` and judges the answer. Replays of failures
        are counted apart from the fuzzing's own requests."""
        self.seq += 1
        request_id = f"fz-{caller.name}-{self.seq}"
        headers = {**caller.headers, "x-request-id": request_id}
        offset = self.server_log.offset()
        started = time.monotonic()
        try:
            response = call(headers)
        except requests.Timeout:
            out = Outcome(failure="timeout", detail=f"no answer within {REQUEST_TIMEOUT_SECS} s", request_id=request_id)
        except requests.RequestException as e:
            if self.server_alive(grace=1.0):
                out = Outcome(failure="no-answer", detail=f"the connection failed: {e}", request_id=request_id)
            else:
                out = Outcome(failure="server-died", detail=f"the server process is gone ({e})", request_id=request_id)
                self.server_gone = True
        else:
            out = judge(response, request_id)
        elapsed = time.monotonic() - started
        self.stats.slowest.append((elapsed, caller.name, operation))
        if len(self.stats.slowest) > 200:
            self.stats.slowest = sorted(self.stats.slowest, reverse=True)[:10]
        if out.failure:
            out.log_lines = self.server_log.lines_since(offset, request_id)
        if replay:
            self.stats.replays += 1
            return out
        counter = self.stats.by_caller[caller.name]
        counter["requests"] += 1
        for code in out.codes or ([out.failure] if out.failure else []):
            self.stats.codes[code] += 1
        if out.failure:
            counter["failing"] += 1
        return out

    # One operation as one caller ------------------------------------------------------------

    def fuzz(
        self, caller: Caller, op: Any, mode: GenerationMode, examples: int, deadline: float, feedback: Any
    ) -> dict[str, Any]:
        """Sends up to `examples` generated documents of `op` as `caller` until `deadline`; returns
        how many were sent and why it stopped early, if it did."""
        label = op.label
        state = {"sent": 0, "refused": 0, "stop": None}
        strategy = op.as_strategy(generation_mode=mode, feedback=feedback)
        ends_credential = op.definition.field_name in CREDENTIAL_ENDING
        if caller.stale:
            caller.fresh()
            caller.stale = False

        def run_case(case: Any) -> None:
            if state["stop"]:
                raise _Stop(state["stop"])
            if self.server_gone:
                state["stop"] = "the server is gone"
                raise _Stop(state["stop"])
            if caller.dead:
                state["stop"] = "the caller's credential is gone"
                raise _Stop(state["stop"])
            if time.monotonic() > deadline:
                state["stop"] = "time"
                raise _Stop(state["stop"])

            def call(headers: dict[str, str]) -> Any:
                self.stats.requests += 1
                return case.call(base_url=self.args.url, session=self.api.session, headers=headers,
                                 timeout=REQUEST_TIMEOUT_SECS)  # fmt: skip

            out = self.send(caller, label, call)
            state["sent"] += 1
            self.stats.fuzzed[caller.name].add(label)
            if out.reached:
                self.stats.reached[caller.name].add(label)
            if out.failure:
                try:
                    self.record(caller, label, case.body, out)
                except Exception as e:  # noqa: BLE001 - the failure stays recorded unreduced
                    log(f"    error reducing the failure: {type(e).__name__}: {e}")
            elif out.dead_credential and caller.headers:
                if ends_credential:
                    # Expected: the next operation gets a fresh credential.
                    caller.stale = True
                    state["stop"] = "credential ended"
                else:
                    log(f"    {caller.name}: credential refused after {label}; using a fresh one")
                    self.stats.renewed.append((caller.name, label))
                    caller.fresh()
            elif out.body is not None and feedback is not None and feedback.extra_data_source is not None:
                try:
                    feedback.extra_data_source.record_response(operation=op, response=_AsResponse(out), case=case)
                except Exception:  # noqa: BLE001 - capture is best effort
                    pass
            if out.refused:
                state["refused"] += 1
            if state["sent"] >= REFUSAL_PROBE and state["refused"] == state["sent"] and mode == GenerationMode.POSITIVE:
                self.stats.closed[caller.name].add(label)
                state["stop"] = "refused"

        test = settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
            report_multiple_bugs=False,
            print_blob=False,
        )(given(case=strategy)(run_case))
        test = hypothesis_seed(self.rng.getrandbits(64))(test)
        try:
            test()
        except _Stop:
            pass
        except hypothesis.errors.Flaky:
            # Hypothesis replays the case that raised _Stop before it re-raises it; with feedback
            # the strategy may draw differently on that replay (the server's answers changed it)
            # and hypothesis calls the run flaky. The stop happened all the same.
            if not state["stop"]:
                raise
        return state

    # Failures --------------------------------------------------------------------------------

    def record(self, caller: Caller, operation: str, query: str, out: Outcome) -> None:
        message = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|fz-[\w-]+|\d+", "#", out.detail)[:120]
        key = (out.failure, operation, message if out.failure != "internal-error" else "")
        if key in self.stats.failures:
            self.stats.failures[key].count += 1
            return
        failure = Failure(
            kind=out.failure or "",
            caller=caller.name,
            operation=operation,
            detail=out.detail,
            query=query,
            headers=dict(caller.headers),
            request_id=out.request_id,
            log_lines=out.log_lines,
            original_size=len(query),
        )
        self.stats.failures[key] = failure
        log(f"    FAILURE {failure.kind} as {caller.name} on {operation}: {out.detail[:200]}")
        if failure.kind in ("server-died", "timeout"):
            return
        self.reduce(caller, failure)

    def reduce(self, caller: Caller, failure: Failure, max_requests: int = 120, max_secs: float = 15.0) -> None:
        """Replays the failing query, then takes parts away while it fails the same way."""
        started = time.monotonic()
        used = 0

        def still_fails(query: str) -> bool:
            nonlocal used
            used += 1
            out = self.send(caller, failure.operation, replay=True,
                            call=lambda h: self.api.post({"query": query, "variables": {}}, h))  # fmt: skip
            return out.failure == failure.kind

        def budget() -> bool:
            return used < max_requests and time.monotonic() - started < max_secs and not self.server_gone

        failure.reproduced = still_fails(failure.query)
        if failure.reproduced:
            failure.query = reduce_query(failure.query, still_fails, budget)
        failure.reduce_requests = used

    # Everything ------------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        args = self.args
        schema = schemathesis.graphql.from_path(args.schema)
        client_schema = schema.client_schema
        node_types = sorted(
            t.name
            for t in client_schema.type_map.values()
            if isinstance(t, graphql.GraphQLObjectType) and any(i.name == "Node" for i in t.interfaces)
        )
        register_scalars(node_types)
        operations = [result.ok() for result in schema.get_all_operations()]
        order = {name: i for i, name in enumerate(CREDENTIAL_ENDING)}
        operations.sort(
            key=lambda op: (
                op.definition.field_name in order,
                order.get(op.definition.field_name, 0),
                not op.label.startswith("Query."),
            )
        )
        # IDs captured from every caller's answers, used in any caller's arguments.
        feedback = FeedbackSources(extra_data_source=schema.create_extra_data_source())

        callers = [Caller("anonymous")]
        if args.driver_phone:
            callers.append(
                Caller(
                    "driver",
                    lambda n: driver_sign_in(self.api, args.database_url, driver_phone(n, args.driver_phone)),
                    spares=3,  # signOut, signOutEverywhere and deleteAccount each end one
                )
            )
        if args.partner_key:
            callers.append(Caller("partner", lambda n: {"authorization": f"Bearer {args.partner_key}"}))
        for spec in args.staff:
            role, email, password = spec.split(":", 2)
            callers.append(Caller(role, lambda n, e=email, p=password: staff_sign_in(self.api, e, p)))
        for caller in callers:
            try:
                caller.prepare()
            except Exception as e:  # noqa: BLE001
                log(f"error: could not sign in as {caller.name}: {e}")
                return 2

        log(
            f"==> fuzzing {len(operations)} operations as {', '.join(c.name for c in callers)}: "
            f"up to {args.examples} examples each, {args.seconds:.0f} s at most, seed {args.seed}"
        )
        self.deadline = started + args.seconds
        ending = [op for op in operations if op.definition.field_name in CREDENTIAL_ENDING]
        regular = [op for op in operations if op not in ending]
        positive, negative = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
        self.breadth = min(args.examples, BREADTH_EXAMPLES)
        # 1. Breadth: a few examples of every operation as every caller (and schema-invalid
        #    documents — wrong argument types, unknown enum values, … — anonymously).
        first = [(c, op, positive, self.breadth) for c in callers for op in regular]
        first[len(regular) : len(regular)] = [
            (callers[0], op, negative, max(1, args.examples // 6)) for op in operations
        ]
        self.run_pairs("breadth", first, self.deadline - ENDING_RESERVE_SECS, feedback, cut_is_loss=True)
        # 2. Depth: the rest of the examples where the caller got past the authorization check,
        #    as long as time allows.
        #    First where it answered, then where it neither answered nor refused (the arguments
        #    were refused before the check, which more examples may get past).
        s = self.stats
        second = [(c, op, positive, args.examples - self.breadth)
                  for c in callers for op in regular if op.label in s.reached[c.name]]  # fmt: skip
        second += [(c, op, positive, args.examples - self.breadth)
                   for c in callers for op in regular
                   if op.label in s.fuzzed[c.name] and op.label not in s.reached[c.name] | s.closed[c.name]]  # fmt: skip
        self.depth_runs = len(second)
        if args.examples <= self.breadth:
            self.depth_runs = 0
        else:
            self.run_pairs("depth", second, self.deadline - ENDING_RESERVE_SECS, feedback, cut_is_loss=False)
        # 3. The mutations that can end the caller's credential, last for each caller.
        third = [(c, op, positive, args.examples) for c in callers for op in ending]
        self.run_pairs("credential-ending mutations", third, self.deadline, feedback, cut_is_loss=True)
        self.elapsed = time.monotonic() - started
        self.operations = operations
        self.callers = callers
        return self.report()

    def run_pairs(self, phase: str, pairs: list, deadline: float, feedback: Any, cut_is_loss: bool) -> None:
        """Fuzzes each (caller, operation, mode, examples) until `deadline`, each at most twice its
        fair share of the time left. With `cut_is_loss`, a run left undone for lack of time is
        reported as a loss of coverage (in the depth phase that is expected)."""
        log(f"  {phase}: {len(pairs)} operation runs")
        for index, (caller, op, mode, examples) in enumerate(pairs):
            if self.server_gone:
                break
            if caller.dead:
                self.stats.skipped_dead.append((caller.name, op.label))
                continue
            now = time.monotonic()
            if now >= deadline:
                if cut_is_loss:
                    self.stats.skipped_for_time.append((caller.name, op.label))
                continue
            fair_share = (deadline - now) / (len(pairs) - index)
            pair_deadline = min(deadline, now + max(2 * fair_share, 0.5))
            state = None
            for attempt in (1, 2):
                # A rerun draws on a new seed and without feedback, so a strategy that the
                # server's answers made inconsistent is not used twice; it gets a few seconds even
                # when the first try used up the operation's share.
                use_feedback = feedback if mode == GenerationMode.POSITIVE and attempt == 1 else None
                until = pair_deadline if attempt == 1 else max(pair_deadline, time.monotonic() + RERUN_SECS)
                try:
                    state = self.fuzz(caller, op, mode, examples, until, use_feedback)
                    break
                except Exception as e:  # noqa: BLE001 - a generator problem is the fuzzer's, reported
                    error = describe_error(e)
                    log(f"    error generating {op.label} ({mode.value}) as {caller.name}, attempt {attempt}: {error}")
                    if attempt == 1 and not self.server_gone:
                        self.stats.fuzzer_errors.append((caller.name, op.label, mode.value, error, True))
                        continue
                    log(traceback.format_exc())
                    self.stats.fuzzer_errors.append((caller.name, op.label, mode.value, error, False))
                    self.stats.by_caller["(fuzzer)"]["errors"] += 1
                    break
            if state is None:
                continue
            self.stats.examples[(caller.name, op.label)] += state["sent"]
            if state["stop"] == "time":
                if state["sent"] == 0 and cut_is_loss:
                    self.stats.skipped_for_time.append((caller.name, op.label))
                else:
                    self.stats.time_capped.append((phase, caller.name, op.label))

    def report(self) -> int:
        s = self.stats
        fuzzed = set().union(*s.fuzzed.values()) if s.fuzzed else set()
        reached = set().union(*s.reached.values()) if s.reached else set()
        failures = sorted(s.failures.values(), key=lambda f: (f.kind, f.operation))
        fuzz_requests = sum(s.by_caller[c.name]["requests"] for c in self.callers)
        print()
        print(f"GraphQL fuzz figures (seed {self.args.seed})")
        print(f"  fuzzing time   {self.elapsed:.1f} s")
        print(f"  operations     {len(self.operations)} in the schema: {len(fuzzed)} fuzzed, {len(reached)} "
              "answered past the authorization check for some caller")  # fmt: skip
        print(f"  requests       {s.requests}: {fuzz_requests} generated, {s.replays} replays of failures, "
              f"{s.requests - fuzz_requests - s.replays} sign-ins")  # fmt: skip
        print(f"  {'caller':<12} {'operations':>10} {'answered':>9} {'requests':>9} {'failing':>8}")
        for c in self.callers:
            counter = s.by_caller[c.name]
            print(f"  {c.name:<12} {len(s.fuzzed[c.name]):>10} {len(s.reached[c.name]):>9} "
                  f"{counter['requests']:>9} {counter['failing']:>8}")  # fmt: skip
        print("  answers        " + ", ".join(f"{code} {n}" for code, n in s.codes.most_common()))
        slow = sorted(s.slowest, reverse=True)[:3]
        if slow:
            print("  slowest        " + ", ".join(f"{o} as {c} {t * 1000:.0f} ms" for t, c, o in slow))
        depth_cut = sum(1 for phase, _, _ in s.time_capped if phase == "depth")
        print(f"  examples       {sum(s.examples.values())}: {self.breadth} of each operation as each caller, "
              f"then up to {self.args.examples} in {self.depth_runs} runs where the caller was let in "
              f"or not yet refused ({self.depth_runs - depth_cut} ran to their end, {depth_cut} stopped "
              "at their share of the time)")  # fmt: skip
        other_cut = sorted({op for phase, _, op in s.time_capped if phase != "depth"})
        if other_cut:
            print("  slow           " + ", ".join(other_cut) + " (stopped at their share of the time)")
        if s.skipped_for_time:
            print(f"  OUT OF TIME    {len(s.skipped_for_time)} operation runs not done within "
                  f"{self.args.seconds:.0f} s (raise SHIFTCOVER_FUZZ_SECONDS or lower SHIFTCOVER_FUZZ_EXAMPLES)")  # fmt: skip
        if s.renewed:
            print("  credentials    refused mid-run, replaced: " + ", ".join(f"{c} after {o}" for c, o in s.renewed))
        if s.skipped_dead:
            print(f"  skipped        {len(s.skipped_dead)} operation runs of callers left without a credential")
        kinds = collections.Counter(f.kind for f in failures)
        print("  failures       " + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"))
        errors = s.by_caller["(fuzzer)"]["errors"]
        recovered = sum(1 for *_, ok in s.fuzzer_errors if ok)
        if errors or recovered:
            print(f"  fuzzer errors  {errors} (and {recovered} that a rerun on a new seed got past)")
            for caller, operation, mode, error, ok in s.fuzzer_errors:
                outcome = "rerun got past it" if ok else "ERROR"
                print(f"    {operation} ({mode}) as {caller}: {error} [{outcome}]")
        for n, f in enumerate(failures, 1):
            print()
            seen = f" (seen {f.count} times)" if f.count > 1 else ""
            print(f"FAILURE {n}/{len(failures)}: {f.kind} in {f.operation} as {f.caller}{seen}")
            print(f"  answer: {f.detail}")
            if f.reproduced:
                print(f"  replayed: fails again; reduced from {f.original_size} to {len(f.query)} characters "
                      f"in {f.reduce_requests} requests")  # fmt: skip
            elif f.reproduced is False:
                print("  replayed: did not fail again (the data had changed); the query is the one that failed")
            for line in f.log_lines:
                print(f"  server log: {line}")
            print("  query:")
            print("    " + f.query.strip().replace("\n", "\n    "))
            print("  variables: {}  (arguments are written inline)")
            print(f"  curl ({self.credential_hint(f)}):")
            print("    " + self.curl(f))
        self.write_report(failures)
        if errors:
            return 2
        return 1 if failures else 0

    @staticmethod
    def credential_hint(f: Failure) -> str:
        if "authorization" in f.headers:
            return f"$TOKEN: the {f.caller}'s bearer token" if f.caller != "partner" else "$TOKEN: a partner API key"
        if "cookie" in f.headers:
            return f"$COOKIE: the {f.caller} user's staff session cookie (staffSignIn)"
        return "no credential"

    def curl(self, f: Failure) -> str:
        parts = ["curl -sS", shlex.quote(self.args.url), "-H 'content-type: application/json'"]
        if "authorization" in f.headers:
            parts.append("-H \"authorization: Bearer $TOKEN\"")
        if "cookie" in f.headers:
            parts.append("-H \"cookie: shiftcover_staff=$COOKIE\"")
        parts.append("--data-raw " + shlex.quote(json.dumps({"query": f.query, "variables": {}})))
        return " ".join(parts)

    def write_report(self, failures: list[Failure]) -> None:
        if not self.args.report:
            return
        s = self.stats
        report = {
            "seed": self.args.seed,
            "seconds": round(self.elapsed, 1),
            "requests": s.requests,
            "operations": len(self.operations),
            "fuzzed": {c: sorted(v) for c, v in s.fuzzed.items()},
            "reached": {c: sorted(v) for c, v in s.reached.items()},
            "answers": dict(s.codes),
            "skipped_for_time": s.skipped_for_time,
            "fuzzer_errors": [
                {"caller": c, "operation": o, "mode": m, "error": e, "recovered": ok}
                for c, o, m, e, ok in s.fuzzer_errors
            ],
            "failures": [
                {k: v for k, v in dataclasses.asdict(f).items() if k != "headers"} | {"variables": {}}
                for f in failures
            ],
        }
        os.makedirs(os.path.dirname(os.path.abspath(self.args.report)), exist_ok=True)
        with open(self.args.report, "w") as out:
            json.dump(report, out, indent=2)


class _AsResponse:
    """The part of a Schemathesis response the ID pool reads, from a judged answer."""

    def __init__(self, out: Outcome):
        self.content = json.dumps(out.body).encode()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="the server's /graphql")
    p.add_argument("--schema", required=True, help="the SDL (`shiftcover schema`)")
    p.add_argument("--database-url", required=True, help="the server's database, to read sign-in codes")
    p.add_argument("--driver-phone", default="+447700100123",
                   help="the driver to sign in as (the demo driver); empty: no driver")  # fmt: skip
    p.add_argument("--partner-key", default="", help="a partner API key")
    p.add_argument("--staff", action="append", default=[], metavar="ROLE:EMAIL:PASSWORD", help="a staff user")
    p.add_argument("--examples", type=int, default=40, help="examples per operation and caller")
    p.add_argument("--seconds", type=float, default=140, help="the most the whole fuzzing takes")
    p.add_argument("--seed", type=int, default=None, help="the random seed (printed; reuse it to replay a run)")
    p.add_argument("--server-pid", type=int, default=0, help="the server's process, to tell a crash from a hiccup")
    p.add_argument("--server-log", default=None, help="the server's log, for the lines about a failure")
    p.add_argument("--report", default=None, help="write the figures and failures here as JSON")
    args = p.parse_args()
    # Hypothesis keeps its caches beside the interpreter (the virtualenv), not in the checkout.
    hypothesis.configuration.set_hypothesis_home_dir(os.path.join(sys.prefix, "hypothesis"))
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2**31)
    return Fuzzer(args).run()


if __name__ == "__main__":
    sys.exit(main())
