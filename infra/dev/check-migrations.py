#!/usr/bin/env python3
"""Expand/contract safety check of the SQL migrations (migrations/*/up.sql).

During a deploy the release that is running keeps serving against the migrated database until
the new one has rolled out, and a rollback puts it back on that database. So a migration must
neither break the running release (drop or rename what it reads, add a column it does not fill)
nor hold a lock that stops it for the length of a table scan or rewrite. This check refuses, in
every migration newer than the baseline (infra/migrations-baseline.txt, the migrations written
before the first release):

  not-null-no-default   ADD COLUMN ... NOT NULL without a DEFAULT (the running release's inserts
                        fail, and it fails outright on a table with rows)
  volatile-default      ADD COLUMN with a volatile default, serial or stored generated column
                        (rewrites the table under an exclusive lock)
  index-lock            CREATE INDEX without CONCURRENTLY (blocks writes for the whole build)
  concurrently-txn      CONCURRENTLY in a migration that runs in a transaction, or not alone in
                        its migration (diesel runs each migration in a transaction unless its
                        directory has metadata.toml with `run_in_transaction = false`, and
                        PostgreSQL runs several statements sent together as one transaction)
  non-txn-many          a migration outside a transaction with more than one statement (a failure
                        half-way leaves it half applied)
  contract-unmarked     DROP TABLE, DROP COLUMN, RENAME (table, column, constraint): contract steps,
                        allowed only under a `-- contract: after <release>` comment naming the
                        release since which nothing reads the old name
  type-change           ALTER COLUMN ... TYPE (rewrites the table, and the running release may not
                        read the new type)
  set-not-null          SET NOT NULL without a validated CHECK (col IS NOT NULL) made NOT VALID and
                        then VALIDATEd earlier (a full scan under an exclusive lock otherwise)
  constraint-validate   ADD FOREIGN KEY or CHECK without NOT VALID, or ADD COLUMN with an inline
                        CHECK or REFERENCES (validates every row under a lock); ADD UNIQUE / PRIMARY KEY / EXCLUDE other than USING INDEX (builds an
                        index under a lock)

All of these are fine on a table created in the same migration: nothing runs against it yet.
A lock rule (index-lock, volatile-default, type-change, set-not-null, constraint-validate) can
be waived for one statement with a `-- lock-ok: <reason>` comment right above it, for a table
known to be small; the reason is the reviewer's to judge.

  check-migrations.py               check migrations/ against infra/migrations-baseline.txt
  check-migrations.py --self-test   run the checker over inline good and bad samples
  check-migrations.py --all         check every migration, baseline included (informative)

Standard library only.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MIGRATIONS = os.path.join(ROOT, "migrations")
BASELINE = os.path.join(ROOT, "infra", "migrations-baseline.txt")

LOCK_RULES = {"index-lock", "volatile-default", "type-change", "set-not-null", "constraint-validate"}


@dataclass
class Migration:
    name: str
    sql: str
    run_in_transaction: bool = True


@dataclass
class Statement:
    text: str  # upper-cased, comments removed, string literals blanked, whitespace collapsed
    line: int  # first line of the statement in up.sql
    comments: list[str]  # the comments directly above it (and inside it)


@dataclass
class Finding:
    migration: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"migrations/{self.migration}/up.sql:{self.line}: [{self.rule}] {self.message}"


@dataclass
class State:
    """What the migrations so far have made, across migrations."""

    # (table, constraint) -> column, for CHECK (column IS NOT NULL) constraints
    not_null_checks: dict[tuple[str, str], str] = field(default_factory=dict)
    # (table, column) whose NOT NULL check has been validated
    validated_not_null: set[tuple[str, str]] = field(default_factory=set)


# ---------------------------------------------------------------------------------------------
# Splitting SQL into statements


def split_statements(sql: str) -> list[Statement]:
    """Splits on top-level semicolons; drops comments (keeping them for markers), blanks string
    literals, keeps dollar-quoted bodies out of the way."""
    out: list[Statement] = []
    buf: list[str] = []
    comments: list[str] = []
    line = 1
    start_line = None
    i, n = 0, len(sql)

    def flush() -> None:
        nonlocal buf, comments, start_line
        text = " ".join("".join(buf).split())
        if text:
            out.append(Statement(text.upper(), start_line or line, comments))
            comments = []
        buf = []
        start_line = None

    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end == -1 else end
            comments.append(sql[i + 2 : end].strip())
            i = end
            continue
        if c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end == -1 else end + 2
            comments.append(sql[i + 2 : end - 2].strip())
            line += sql.count("\n", i, end)
            buf.append(" ")
            i = end
            continue
        if c == "'":
            j = i + 1
            while j < n:
                if sql[j] == "'" and j + 1 < n and sql[j + 1] == "'":
                    j += 2
                    continue
                if sql[j] == "'":
                    break
                j += 1
            line += sql.count("\n", i, j + 1)
            if start_line is None:
                start_line = line
            buf.append("''")
            i = j + 1
            continue
        if c == '"':
            j = sql.find('"', i + 1)
            j = n - 1 if j == -1 else j
            if start_line is None:
                start_line = line
            buf.append(sql[i + 1 : j].replace(" ", "_"))
            i = j + 1
            continue
        if c == "$":
            m = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])
            if m:
                tag = m.group(0)
                end = sql.find(tag, i + len(tag))
                end = n if end == -1 else end + len(tag)
                line += sql.count("\n", i, end)
                buf.append(" $BODY$ ")
                i = end
                continue
        if c == ";":
            flush()
            i += 1
            continue
        if c == "\n":
            line += 1
        elif not c.isspace() and start_line is None:
            start_line = line
        buf.append(c)
        i += 1
    flush()
    return out


def split_top_level(text: str, sep: str = ",") -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


IDENT = r'[A-Z_][A-Z0-9_$]*(?:\.[A-Z_][A-Z0-9_$]*)?'


def table_name(raw: str) -> str:
    name = raw.strip().lower()
    return name.split(".", 1)[1] if name.startswith("public.") else name


def marker(stmt: Statement, kind: str) -> str | None:
    """The text of a `-- kind: …` comment attached to the statement, if any."""
    for c in stmt.comments:
        m = re.match(rf"{kind}\s*:\s*(.*)$", c, re.I)
        if m:
            return m.group(1).strip()
    return None


# ---------------------------------------------------------------------------------------------
# The rules

VOLATILE = re.compile(
    r"\bDEFAULT\b[^,]*\b(GEN_RANDOM_UUID|UUID_GENERATE_V\d|RANDOM|CLOCK_TIMESTAMP|TIMEOFDAY|NEXTVAL)\s*\("
)


def check_migration(mig: Migration, state: State, enforce: bool) -> list[Finding]:
    """Checks one migration and updates `state`. With `enforce` false (a baseline migration) it
    only records what the migration made."""
    findings: list[Finding] = []
    statements = split_statements(mig.sql)
    created = set()
    for s in statements:
        m = re.match(rf"CREATE (?:(?:GLOBAL |LOCAL )?(?:TEMP|TEMPORARY|UNLOGGED) )?TABLE (?:IF NOT EXISTS )?({IDENT})", s.text)
        if m:
            created.add(table_name(m.group(1)))

    def fail(s: Statement, rule: str, message: str) -> None:
        if not enforce:
            return
        if rule in LOCK_RULES and marker(s, "lock-ok"):
            return
        findings.append(Finding(mig.name, s.line, rule, message))

    concurrent = [s for s in statements if re.search(r"\bCONCURRENTLY\b", s.text)
                  and re.match(r"(CREATE (UNIQUE )?INDEX|DROP INDEX|REINDEX)\b", s.text)]
    for s in concurrent:
        if mig.run_in_transaction:
            fail(s, "concurrently-txn",
                 "CONCURRENTLY cannot run inside a transaction: give the migration a metadata.toml "
                 "with `run_in_transaction = false`")
        elif len(statements) > 1:
            fail(s, "concurrently-txn",
                 "CONCURRENTLY must be the only statement of its migration (statements sent "
                 "together run as one transaction)")
    if not mig.run_in_transaction and len(statements) > 1 and not concurrent:
        fail(statements[0], "non-txn-many",
             "a migration with `run_in_transaction = false` must hold one statement")

    for s in statements:
        t = s.text
        contract = marker(s, "contract")
        contract_ok = bool(contract and re.match(r"after\s+\S+", contract, re.I))

        m = re.match(rf"CREATE (UNIQUE )?INDEX (CONCURRENTLY )?(?:IF NOT EXISTS )?(?:{IDENT} )?ON (?:ONLY )?({IDENT})", t)
        if m:
            table = table_name(m.group(3))
            if not m.group(2) and table not in created:
                fail(s, "index-lock",
                     f"CREATE INDEX on existing table {table} without CONCURRENTLY blocks its "
                     "writes while it builds")
            continue

        m = re.match(rf"DROP TABLE (?:IF EXISTS )?(.*)$", t)
        if m:
            if not contract_ok:
                fail(s, "contract-unmarked",
                     "DROP TABLE is a contract step: mark it `-- contract: after <release>`")
            continue

        m = re.match(rf"ALTER TABLE (?:IF EXISTS )?(?:ONLY )?({IDENT}) (.*)$", t)
        if not m:
            continue
        table = table_name(m.group(1))
        rest = m.group(2)
        if re.match(r"RENAME\b", rest):
            if not contract_ok and table not in created:
                fail(s, "contract-unmarked",
                     f"RENAME on {table} breaks the running release: add the new name beside the "
                     "old one, or mark the statement `-- contract: after <release>`")
            continue
        is_new = table in created
        for action in split_top_level(rest):
            check_action(s, table, action, is_new, contract_ok, state, fail)
    return findings


def check_action(s, table, action, is_new, contract_ok, state, fail) -> None:
    a = action.strip()

    # Constraints: recorded even on new tables, for the SET NOT NULL pattern.
    m = re.match(rf"ADD (?:CONSTRAINT ({IDENT}) )?(CHECK|FOREIGN KEY|UNIQUE|PRIMARY KEY|EXCLUDE)\b(.*)$", a)
    if m:
        name, kind, body = (m.group(1) or "").lower(), m.group(2), m.group(3)
        nn = re.match(rf"\s*\(\s*\(?\s*({IDENT})\s+IS NOT NULL\s*\)?\s*\)", body)
        if kind == "CHECK" and nn and name:
            state.not_null_checks[(table, name)] = nn.group(1).lower()
            if "NOT VALID" not in body:
                state.validated_not_null.add((table, nn.group(1).lower()))
        if is_new:
            return
        if kind in ("CHECK", "FOREIGN KEY") and "NOT VALID" not in body:
            fail(s, "constraint-validate",
                 f"ADD {kind} on existing table {table} checks every row under a lock: add it "
                 "NOT VALID, then VALIDATE CONSTRAINT in a later migration")
        elif kind in ("UNIQUE", "PRIMARY KEY") and "USING INDEX" not in body:
            fail(s, "constraint-validate",
                 f"ADD {kind} on existing table {table} builds an index under a lock: CREATE UNIQUE "
                 "INDEX CONCURRENTLY first, then ADD CONSTRAINT ... USING INDEX")
        elif kind == "EXCLUDE":
            fail(s, "constraint-validate",
                 f"ADD EXCLUDE on existing table {table} builds an index under a lock")
        return

    m = re.match(rf"VALIDATE CONSTRAINT ({IDENT})", a)
    if m:
        column = state.not_null_checks.get((table, m.group(1).lower()))
        if column:
            state.validated_not_null.add((table, column))
        return

    if is_new:
        return

    if re.match(r"DROP (COLUMN )?(IF EXISTS )?", a) and not re.match(r"DROP (CONSTRAINT|DEFAULT|NOT NULL|EXPRESSION|IDENTITY)\b", a):
        if not contract_ok:
            fail(s, "contract-unmarked",
                 f"DROP COLUMN on {table} breaks the running release if it reads the column: "
                 "mark it `-- contract: after <release>` once no release does")
        return

    m = re.match(rf"ADD (?:COLUMN )?(?:IF NOT EXISTS )?({IDENT}) (.*)$", a)
    if m:
        column, definition = m.group(1).lower(), m.group(2)
        if re.search(r"\bNOT NULL\b", definition) and not re.search(r"\bDEFAULT\b", definition):
            fail(s, "not-null-no-default",
                 f"ADD COLUMN {column} NOT NULL without DEFAULT on existing table {table}: the "
                 "running release's inserts fail. Add it nullable (or with a DEFAULT), backfill, "
                 "then enforce NOT NULL in a later release")
        if VOLATILE.search(definition) or re.match(r"(SMALL|BIG)?SERIAL\b", definition) \
                or re.search(r"\bGENERATED ALWAYS AS\b.*\bSTORED\b", definition):
            fail(s, "volatile-default",
                 f"ADD COLUMN {column} with a volatile default or a stored generated value "
                 f"rewrites {table} under an exclusive lock: add it without, backfill in batches")
        if re.search(r"\bCHECK\s*\(|\bREFERENCES\b", definition):
            fail(s, "constraint-validate",
                 f"ADD COLUMN {column} with an inline CHECK or REFERENCES scans {table} under the "
                 "ALTER's exclusive lock: add the column bare, then ADD CONSTRAINT ... NOT VALID "
                 "and VALIDATE CONSTRAINT in a later migration")
        if re.search(r"\bPRIMARY KEY\b|\bUNIQUE\b", definition):
            fail(s, "constraint-validate",
                 f"ADD COLUMN {column} with UNIQUE or PRIMARY KEY builds an index on {table} "
                 "under a lock")
        return

    m = re.match(rf"ALTER (?:COLUMN )?({IDENT}) (.*)$", a)
    if m:
        column, change = m.group(1).lower(), m.group(2)
        if re.match(r"(SET DATA )?TYPE\b", change):
            fail(s, "type-change",
                 f"ALTER COLUMN {column} TYPE rewrites {table} under an exclusive lock and may "
                 "break the running release: add a new column, backfill, switch, drop the old")
        elif re.match(r"SET NOT NULL\b", change):
            if (table, column) not in state.validated_not_null:
                fail(s, "set-not-null",
                     f"SET NOT NULL on {table}.{column} scans the table under an exclusive lock: "
                     f"first ADD CONSTRAINT ... CHECK ({column} IS NOT NULL) NOT VALID, then "
                     "VALIDATE CONSTRAINT in a later migration")
        return


# ---------------------------------------------------------------------------------------------
# Running over the repository


def load_migrations(directory: str) -> list[Migration]:
    out = []
    for name in sorted(os.listdir(directory)):
        up = os.path.join(directory, name, "up.sql")
        if not os.path.isfile(up):
            continue
        with open(up, encoding="utf-8") as f:
            sql = f.read()
        in_txn = True
        meta = os.path.join(directory, name, "metadata.toml")
        if os.path.isfile(meta):
            with open(meta, encoding="utf-8") as f:
                if re.search(r"^\s*run_in_transaction\s*=\s*false\s*$", f.read(), re.M):
                    in_txn = False
        out.append(Migration(name, sql, in_txn))
    return out


def load_baseline(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]


def check_all(migrations: list[Migration], baseline: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    names = [m.name for m in migrations]
    missing = [b for b in baseline if b not in names]
    for b in missing:
        findings.append(Finding(b, 0, "baseline", "listed in the baseline but not in migrations/"))
    # The baseline is the migrations before the first release: it must be a prefix of the list,
    # so a later migration cannot be waved through by adding it there.
    if not missing and names[: len(baseline)] != baseline:
        findings.append(Finding(baseline[-1], 0, "baseline",
                                "the baseline must list the oldest migrations, in order, and no others"))
    state = State()
    base = set(baseline)
    for m in migrations:
        findings.extend(check_migration(m, state, enforce=m.name not in base))
    return findings


# ---------------------------------------------------------------------------------------------
# Self-test

SAMPLES: list[tuple[str, list[Migration], list[str]]] = [
    ("add nullable column", [Migration("a", "ALTER TABLE drivers ADD COLUMN nickname text;")], []),
    ("add NOT NULL with default",
     [Migration("a", "ALTER TABLE drivers ADD COLUMN tier text NOT NULL DEFAULT 'basic';")], []),
    ("add NOT NULL without default",
     [Migration("a", "ALTER TABLE drivers ADD COLUMN tier text NOT NULL;")], ["not-null-no-default"]),
    ("new table: anything goes",
     [Migration("a", """
        CREATE TABLE badges (id uuid PRIMARY KEY, driver_id uuid NOT NULL);
        CREATE INDEX badges_driver_idx ON badges (driver_id);
        ALTER TABLE badges ADD COLUMN level int NOT NULL;
        ALTER TABLE badges ADD CONSTRAINT badges_driver_fk FOREIGN KEY (driver_id) REFERENCES drivers (id);
        ALTER TABLE public."badges" ALTER COLUMN level TYPE bigint;
     """)], []),
    ("index without CONCURRENTLY on existing table",
     [Migration("a", "CREATE INDEX drivers_email_idx ON drivers (email);")], ["index-lock"]),
    ("CONCURRENTLY inside a transaction",
     [Migration("a", "CREATE INDEX CONCURRENTLY drivers_email_idx ON drivers (email);")],
     ["concurrently-txn"]),
    ("CONCURRENTLY alone, outside a transaction",
     [Migration("a", "-- search\nCREATE INDEX CONCURRENTLY IF NOT EXISTS d_idx ON drivers USING gin (lower(name) gin_trgm_ops)\n",
                run_in_transaction=False)], []),
    ("CONCURRENTLY beside another statement",
     [Migration("a", "CREATE INDEX CONCURRENTLY a_idx ON drivers (a); CREATE INDEX CONCURRENTLY b_idx ON drivers (b);",
                run_in_transaction=False)], ["concurrently-txn", "concurrently-txn"]),
    ("several statements outside a transaction",
     [Migration("a", "ALTER TABLE drivers ADD COLUMN a text; ALTER TABLE drivers ADD COLUMN b text;",
                run_in_transaction=False)], ["non-txn-many"]),
    ("unmarked contract steps",
     [Migration("a", """
        ALTER TABLE drivers DROP COLUMN nickname;
        DROP TABLE old_things;
        ALTER TABLE drivers RENAME COLUMN name TO full_name;
        ALTER TABLE vehicles RENAME TO cars;
     """)], ["contract-unmarked"] * 4),
    ("marked contract steps",
     [Migration("a", """
        -- contract: after 2027.01.1 (nothing reads nickname since)
        ALTER TABLE drivers DROP COLUMN nickname;
        -- contract: after 2027.01.1
        DROP TABLE IF EXISTS old_things;
     """)], []),
    ("contract marker without a release",
     [Migration("a", "-- contract: soon\nALTER TABLE drivers DROP COLUMN nickname;")],
     ["contract-unmarked"]),
    ("type change", [Migration("a", "ALTER TABLE drivers ALTER COLUMN phone TYPE varchar(20);")],
     ["type-change"]),
    ("type change waived for a small table",
     [Migration("a", "-- lock-ok: 12 rows, reference data\nALTER TABLE products ALTER COLUMN code SET DATA TYPE text;")], []),
    ("SET NOT NULL straight away",
     [Migration("a", "ALTER TABLE drivers ALTER COLUMN tier SET NOT NULL;")], ["set-not-null"]),
    ("SET NOT NULL after a CHECK NOT VALID, not validated",
     [Migration("a", "ALTER TABLE drivers ADD CONSTRAINT drivers_tier_nn CHECK (tier IS NOT NULL) NOT VALID;"),
      Migration("b", "ALTER TABLE drivers ALTER COLUMN tier SET NOT NULL;")], ["set-not-null"]),
    ("SET NOT NULL after CHECK NOT VALID and VALIDATE",
     [Migration("a", "ALTER TABLE drivers ADD CONSTRAINT drivers_tier_nn CHECK (tier IS NOT NULL) NOT VALID;"),
      Migration("b", "ALTER TABLE drivers VALIDATE CONSTRAINT drivers_tier_nn;"),
      Migration("c", "ALTER TABLE drivers ALTER COLUMN tier SET NOT NULL, DROP CONSTRAINT drivers_tier_nn;")], []),
    ("foreign key and check without NOT VALID",
     [Migration("a", """
        ALTER TABLE claims ADD CONSTRAINT claims_session_fk FOREIGN KEY (session_id) REFERENCES cover_sessions (id);
        ALTER TABLE claims ADD CHECK (amount_minor >= 0);
     """)], ["constraint-validate", "constraint-validate"]),
    ("foreign key NOT VALID, validated later",
     [Migration("a", "ALTER TABLE claims ADD CONSTRAINT claims_session_fk FOREIGN KEY (session_id) REFERENCES cover_sessions (id) NOT VALID;"),
      Migration("b", "ALTER TABLE claims VALIDATE CONSTRAINT claims_session_fk;")], []),
    ("unique constraint built in place",
     [Migration("a", "ALTER TABLE drivers ADD CONSTRAINT drivers_email_key UNIQUE (email);")],
     ["constraint-validate"]),
    ("unique constraint from an index built concurrently",
     [Migration("a", "ALTER TABLE drivers ADD CONSTRAINT drivers_email_key UNIQUE USING INDEX drivers_email_idx;")], []),
    ("inline CHECK and REFERENCES on an added column",
     [Migration("a", "ALTER TABLE refunds ADD COLUMN k text CHECK (char_length(k) < 200), "
                     "ADD COLUMN claim_id uuid REFERENCES claims (id);")],
     ["constraint-validate", "constraint-validate"]),
    ("volatile default",
     [Migration("a", "ALTER TABLE drivers ADD COLUMN ref uuid NOT NULL DEFAULT gen_random_uuid();")],
     ["volatile-default"]),
    ("strings, comments and function bodies are not statements",
     [Migration("a", """
        /* DROP TABLE drivers; */
        -- ALTER TABLE drivers DROP COLUMN name;
        COMMENT ON TABLE drivers IS 'we never DROP TABLE drivers; really';
        CREATE OR REPLACE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN ALTER TABLE drivers DROP COLUMN x; RETURN NEW; END $$;
     """)], []),
    ("baseline migrations are not checked, later ones are",
     [Migration("old", "CREATE INDEX a_idx ON drivers (a);"),
      Migration("new", "CREATE INDEX b_idx ON drivers (b);")], ["index-lock"]),
]


def self_test() -> int:
    failures = 0
    for title, migrations, expected in SAMPLES:
        baseline = ["old"] if migrations[0].name == "old" else []
        got = sorted(f.rule for f in check_all(migrations, baseline))
        ok = got == sorted(expected)
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {title}" + ("" if ok else f": expected {sorted(expected)}, got {got}"))
    # A baseline that is not a prefix is refused.
    got = [f.rule for f in check_all([Migration("a", ""), Migration("b", "")], ["b"])]
    ok = got == ["baseline"]
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} a baseline that skips an older migration is refused")
    print(f"self-test: {len(SAMPLES) + 1 - failures} passed, {failures} failed")
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if "--self-test" in argv:
        return self_test()
    migrations = load_migrations(MIGRATIONS)
    baseline = [] if "--all" in argv else load_baseline(BASELINE)
    findings = check_all(migrations, baseline)
    for f in findings:
        print(f)
    checked = len(migrations) - len(baseline)
    if findings:
        print(f"check-migrations: {len(findings)} problem(s) in {checked} migration(s) after the "
              f"baseline of {len(baseline)}; see infra/README.md, 'Expand and contract'")
        return 1
    print(f"check-migrations: {checked} migration(s) after the baseline of {len(baseline)} are "
          "expand/contract safe")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
