# Sourced by scripts/test.sh and scripts/demo.sh: makes sure the toolchain is
# there on a fresh Debian machine. Installs Erlang/Elixir from apt only when
# missing; never touches Hex (none is needed: all Mix deps are path deps).

export LANG="${LANG:-C.UTF-8}" LC_ALL="${LC_ALL:-C.UTF-8}"
export DEBIAN_FRONTEND=noninteractive
# Never reach for Hex: use the bundled libcluster stand-in (a path dep).
export HYPARVIEW_LIBCLUSTER="${HYPARVIEW_LIBCLUSTER:-standin}"

# rustup installs into ~/.cargo/bin, which non-login shells often lack.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

hpv_apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "error: need root (or sudo) to apt-get install: $*" >&2; exit 1
    fi
  fi
  echo "==> apt-get install $*"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "$@"
}

hpv_ensure_tools() {
  local need=()
  command -v mix >/dev/null 2>&1 || need+=(elixir)
  command -v erl >/dev/null 2>&1 || need+=(erlang-base)
  # Parts of OTP that Debian ships separately and Mix/ExUnit/the build use;
  # only when Erlang is (or will be) Debian's, not e.g. an asdf/kerl install.
  local pkg
  if command -v dpkg-query >/dev/null 2>&1 &&
     { ! command -v erl >/dev/null 2>&1 || dpkg -S "$(readlink -f "$(command -v erl)")" >/dev/null 2>&1; }; then
    for pkg in erlang-dev erlang-parsetools erlang-xmerl erlang-crypto erlang-syntax-tools \
               erlang-tools erlang-runtime-tools erlang-inets erlang-public-key erlang-ssl; do
      if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
        need+=("$pkg")
      fi
    done
  fi
  # The Rust linker driver.
  command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
  if [ "${#need[@]}" -gt 0 ]; then hpv_apt_install "${need[@]}"; fi

  if ! command -v cargo >/dev/null 2>&1; then
    cat >&2 <<'MSG'
error: cargo (Rust) is not installed; the NIF is built with cargo.
Install Rust with rustup, then re-run this script:
    apt-get install -y curl ca-certificates
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
    . "$HOME/.cargo/env"
MSG
    exit 1
  fi
}

hpv_ensure_rust_components() {
  local missing=()
  cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
  if [ "${#missing[@]}" -gt 0 ]; then
    if command -v rustup >/dev/null 2>&1; then
      echo "==> rustup component add ${missing[*]}"
      rustup component add "${missing[@]}"
    else
      echo "error: cargo ${missing[*]} missing; install them (rustup component add ${missing[*]})" >&2
      exit 1
    fi
  fi
}
