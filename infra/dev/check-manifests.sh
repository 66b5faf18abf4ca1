#!/usr/bin/env bash
# Validates every Kubernetes manifest under infra/k8s against the Kubernetes API schemas, with the
# PyPI package kubernetes-validate (offline: the schemas ship inside the package). Exits non-zero
# when any document is invalid, of an unknown kind, or when a file does not parse.
#
#   infra/dev/check-manifests.sh            check infra/k8s
#   infra/dev/check-manifests.sh FILE|DIR…  check these instead
#
# The virtualenv lives under ${XDG_CACHE_HOME:-$HOME/.cache}/shiftcover/k8s-venv (override with
# SHIFTCOVER_K8S_VENV); it is made once and reused. kustomization.yaml files are not Kubernetes
# objects: they are checked only for naming files that exist. The settings file in the ConfigMap
# and the keys of the Secret are checked against apps/shared/src/settings.rs (the process refuses
# unknown keys at start).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${SHIFTCOVER_K8S_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/shiftcover/k8s-venv}"
PY="$VENV/bin/python"
VALIDATE_VERSION="${SHIFTCOVER_K8S_VALIDATE_VERSION:-1.37.0}"
# The Kubernetes versions the manifests must be valid for: the oldest cluster we deploy to and
# the newest the package knows.
K8S_VERSIONS="${SHIFTCOVER_K8S_VERSIONS:-1.30.0 1.37.0}"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=venv.sh
source "$HERE/venv.sh"

installed() {
    [ -x "$VENV/bin/kubernetes-validate" ] \
        && "$PY" -c 'import kubernetes_validate, yaml' >/dev/null 2>&1
}

install() {
    make_venv "$VENV" installed "kubernetes-validate $VALIDATE_VERSION" \
        "kubernetes-validate==$VALIDATE_VERSION" pyyaml
}

install

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("$ROOT/infra/k8s")

manifests=()
kustomizations=()
for t in "${targets[@]}"; do
    [ -e "$t" ] || die "no such file or directory: $t"
    while IFS= read -r -d '' f; do
        case "$(basename "$f")" in
            kustomization.yaml | kustomization.yml | Kustomization) kustomizations+=("$f") ;;
            *) manifests+=("$f") ;;
        esac
    done < <(find "$t" -type f \( -name '*.yaml' -o -name '*.yml' \) -print0 | sort -z)
done
[ ${#manifests[@]} -gt 0 ] || die "no manifests found in: ${targets[*]}"

failed=0

# Every file a kustomization names must exist and be one of the checked manifests' files.
for k in "${kustomizations[@]}"; do
    "$PY" - "$k" <<'PY' || failed=1
import os, sys, yaml
path = sys.argv[1]
with open(path) as f:
    doc = yaml.safe_load(f)
base = os.path.dirname(path)
bad = []
if not isinstance(doc, dict) or doc.get("kind") != "Kustomization":
    bad.append("not a Kustomization")
else:
    for entry in doc.get("resources", []) or []:
        if not os.path.exists(os.path.join(base, entry)):
            bad.append(f"resource {entry} does not exist")
for b in bad:
    print(f"{path}: {b}")
if bad:
    sys.exit(1)
print(f"{path}: kustomization OK")
PY
done

# --strict: fields the schema does not know are errors (a typo in a field name is not ignored).
# kubernetes-validate exits non-zero when a document fails its schema, but only warns (exit 0)
# about a kind it has no schema for, so that warning is made an error here.
for version in $K8S_VERSIONS; do
    out="$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}" 2>&1)" \
        || failed=1
    [ -z "$out" ] || printf '%s\n' "$out"
    if grep -q "Couldn't find schema" <<<"$out"; then failed=1; fi
done

# Every document must have a kind, a name and (except the Namespace) our namespace, so nothing
# lands in `default` by accident.
"$PY" - "${manifests[@]}" <<'PY' || failed=1
import sys, yaml
bad = 0
for path in sys.argv[1:]:
    with open(path) as f:
        try:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            print(f"{path}: does not parse: {e}")
            bad += 1
            continue
    if not docs:
        print(f"{path}: no documents")
        bad += 1
    for d in docs:
        kind = d.get("kind")
        meta = d.get("metadata") or {}
        where = f"{path}: {kind}/{meta.get('name')}"
        if not kind or not meta.get("name"):
            print(f"{where}: needs kind and metadata.name")
            bad += 1
        elif kind != "Namespace" and meta.get("namespace") != "shiftcover":
            print(f"{where}: metadata.namespace must be shiftcover")
            bad += 1
sys.exit(1 if bad else 0)
PY

# The settings file in the ConfigMap and the keys of the Secret must name settings that exist:
# the process refuses unknown keys at start (exit code 2), which would fail a rollout.
"$PY" - "$ROOT/apps/shared/src/settings.rs" "${manifests[@]}" <<'PY' || failed=1
import re, sys, tomllib, yaml
src = open(sys.argv[1]).read()
structs = {}
for name, body in re.findall(r"pub struct (\w+) \{(.*?)\n\}", src, re.S):
    structs[name] = dict(re.findall(r"pub (\w+): (\w+)", body))
top = structs["Settings"]
known = {}
for section, ty in top.items():
    known[section] = set(structs[ty]) if ty in structs else None
bad = []
def check_key(where, section, key=None):
    if section not in known:
        bad.append(f"{where}: unknown settings section {section!r}")
    elif key is not None and (known[section] is None or key not in known[section]):
        bad.append(f"{where}: unknown setting {section}.{key}")
for path in sys.argv[2:]:
    try:
        docs = list(yaml.safe_load_all(open(path)))
    except yaml.YAMLError:
        continue  # reported by the checks above
    for d in docs:
        if not d:
            continue
        kind, name = d.get("kind"), (d.get("metadata") or {}).get("name")
        where = f"{path}: {kind}/{name}"
        if kind == "ConfigMap":
            for file, text in (d.get("data") or {}).items():
                if not file.endswith(".toml"):
                    continue
                try:
                    conf = tomllib.loads(text)
                except tomllib.TOMLDecodeError as e:
                    bad.append(f"{where}: {file} does not parse: {e}")
                    continue
                for section, value in conf.items():
                    if isinstance(value, dict):
                        for key in value:
                            check_key(f"{where} {file}", section, key)
                    else:
                        check_key(f"{where} {file}", section)
        if kind == "Secret":
            for env in {**(d.get("stringData") or {}), **(d.get("data") or {})}:
                parts = env.split("__")
                if parts[0] != "SHIFTCOVER" or len(parts) not in (2, 3):
                    bad.append(f"{where}: {env} is not a SHIFTCOVER__SECTION__KEY name")
                    continue
                check_key(where, parts[1].lower(), parts[2].lower() if len(parts) == 3 else None)
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
PY

if [ "$failed" -ne 0 ]; then
    die "manifest check failed"
fi
say "${#manifests[@]} manifest files valid for Kubernetes ${K8S_VERSIONS// / and }"
