# Shared by bin/serve and bin/test: a project virtualenv with the given requirements file installed.
# Installs only when the requirements changed since the last install.
ensure_venv() {
  local req="$1"
  if [ ! -x .venv/bin/python ]; then
    echo "creating .venv"
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
  fi
  local want have
  want=$(cat requirements*.txt | sha256sum | cut -d' ' -f1)-$req
  have=$(cat .venv/.installed 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    echo "installing $req"
    .venv/bin/python -m pip install -q -r "$req"
    echo "$want" > .venv/.installed
  fi
}
