# Sourced by the scripts: apt_install_missing COMMAND PACKAGE CONSEQUENCE installs Debian's PACKAGE
# (apt-get update, then install without Recommends: prometheus would bring a node exporter serving the
# host on *:9100; sudo -n unless root) when COMMAND is not on PATH. Returns 1 and
# says "could not install PACKAGE (apt-get); CONSEQUENCE" on stderr when that fails.
apt_install_missing() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "== installing $2 (Debian package)"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "$2" >/dev/null; } \
    || { echo "$0: could not install '$2' (apt-get); $3" >&2; return 1; }
}
