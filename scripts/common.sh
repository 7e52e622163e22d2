# Sourced by the other scripts: installs what is missing (Debian packages, sudo only when not
# root), finds nvcc, and configures + builds a build directory.
set -euo pipefail
RETROKV_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS="${JOBS:-$(nproc)}"

retrokv_sudo() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages retrokv builds with; only the missing ones are installed.
RETROKV_APT_PACKAGES=(cmake g++ make libeigen3-dev libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libhnswlib-dev libfaiss-dev python3 python3-pip
  python3-matplotlib unzip ca-certificates)

retrokv_install_deps() {
  local missing=()
  for p in "${RETROKV_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    retrokv_sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive retrokv_sudo apt-get install -y -qq --no-install-recommends \
      "${missing[@]}"
  fi
  if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
}

# A Python that has matplotlib (the Debian one when the PATH's python3 lacks it).
retrokv_python() {
  if python3 -c "import matplotlib" >/dev/null 2>&1; then echo python3
  elif /usr/bin/python3 -c "import matplotlib" >/dev/null 2>&1; then echo /usr/bin/python3
  else echo python3; fi
}

# retrokv_configure DIR [cmake args...]: options are passed explicitly every time, so a build
# directory configured by one script (e.g. demo.sh) never silently changes what another builds.
retrokv_configure() {
  local dir="$1"; shift
  cmake -S "$RETROKV_ROOT" -B "$RETROKV_ROOT/$dir" -DCMAKE_BUILD_TYPE=Release \
    -DRETROKV_BUILD_TESTS=ON -DRETROKV_BUILD_BENCHMARKS=ON -DRETROKV_BUILD_EXAMPLES=ON \
    -DRETROKV_SANITIZE= "$@" >/dev/null
}

# retrokv_build DIR [cmake args...]: configure, then build everything.
retrokv_build() {
  local dir="$1"
  retrokv_configure "$@"
  cmake --build "$RETROKV_ROOT/$dir" -j "$JOBS"
}
