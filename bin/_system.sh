# Sourced by bin/serve and bin/test: Debian packages the project needs beside its virtualenv.
# Installs what is missing with apt when we are root; otherwise says what to install. Never fails the caller:
# what depends on a missing package says so itself (a clear error, or a test skipped with the reason).
ensure_debian_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system packages missing: ${missing[*]} (install them with: sudo apt-get install -y ${missing[*]})"
    return 0
  fi
  echo "installing system packages: ${missing[*]}"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
    echo "installing ${missing[*]} failed; the parts that need them will say so"
  fi
  return 0
}
# fonts-wqy-microhei: Chinese text on PNG labels. chromium: the browser tests (never Playwright's own download).
RUNTIME_PACKAGES=(fonts-wqy-microhei)
TEST_PACKAGES=(fonts-wqy-microhei chromium)
