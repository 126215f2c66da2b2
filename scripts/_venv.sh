# Shared by scripts/serve, scripts/test and scripts/bench: make .venv and install the project
# into it (editable, so migrations/ and alembic.ini are found beside the package).
# Needs only Python 3.11+ on PATH; everything else comes from PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # the repository root, whoever sources this
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "impersonation-bot needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
extras="${1:-}"
stamp=".venv/.installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ clients/python/pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
  # The product-side kit is its own distribution (clients/python): the demo product that
  # `serve`'s local mode runs uses it, and its tests, the demo product's and the kit
  # benchmark's run in this venv.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "./clients/python${extras:+[$extras]}"
  touch "$stamp"
fi
