#!/usr/bin/env bash
# Checks template.yaml: cfn-lint, `sam validate --lint`, plain `sam validate`, and checkov
# with no failed check (a check that does not fit is skipped in the resource's Metadata,
# with the reason). Runs offline: a region and dummy credentials are set and instance
# metadata is disabled, so nothing reaches an AWS account. Installs the pinned tools
# (scripts/requirements-validate.txt) into .venv-validate once; later runs reuse it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-validate"
req="$root/scripts/requirements-validate.txt"
stamp="$venv/.requirements"
template="$root/template.yaml"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! cmp -s "$req" "$stamp"; then
    started=$(date +%s)
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
    echo "validation tools installed in $(( $(date +%s) - started ))s"
fi

unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline
export AWS_EC2_METADATA_DISABLED=true SAM_CLI_TELEMETRY=0

echo "-- cfn-lint"
"$venv/bin/cfn-lint" "$template"

echo "-- sam validate --lint"
"$venv/bin/sam" validate --lint --template-file "$template"

# samconfig.toml turns lint on for `sam validate`; an empty config gives the plain check
# (the SAM transform alone).
echo "-- sam validate"
empty="$(mktemp --suffix=.toml)"
trap 'rm -f "$empty"' EXIT
echo 'version = 0.1' >"$empty"
"$venv/bin/sam" validate --template-file "$template" --config-file "$empty"

echo "-- checkov"
# --skip-download: no call to the vendor's API (offline); exits non-zero on a failed check.
"$venv/bin/checkov" -f "$template" --framework cloudformation --skip-download \
    --compact --quiet 2>/dev/null
# Every skip must say why.
"$venv/bin/python" - "$template" <<'PY'
import sys, yaml
class Loader(yaml.SafeLoader):
    pass
Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
doc = yaml.load(open(sys.argv[1]), Loader=Loader)
bad, skips = [], 0
for name, res in doc["Resources"].items():
    for skip in ((res.get("Metadata") or {}).get("checkov") or {}).get("skip", []):
        skips += 1
        if len(str(skip.get("comment", "")).strip()) < 20:
            bad.append(f"{name}: {skip.get('id')}")
if bad:
    sys.exit("checkov skips without a reason: " + ", ".join(bad))
print(f"checkov skips, each with its reason: {skips}")
PY
