#!/usr/bin/env bash
#
# test/install-deps.sh: install what building and testing ethindex needs on
# Debian 12.  Idempotent: installs only what is missing.
#
#   as root:  Debian packages (apt-get update only when something is
#             missing), the test user "ethindex", and the pinned Foundry
#             binaries (test/package.json) in test/node_modules
#   as a normal user: only checks, and installs test/node_modules if npm is
#             there
#
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FOUNDRY_VERSION=1.7.1
TEST_USER=ethindex

log() { echo "install-deps: $*"; }

# clang-14 and libclang-rt-14-dev: the libFuzzer harnesses (make fuzz)
packages=(postgresql-15 postgresql-server-dev-15 postgresql-contrib
          build-essential libcurl4-openssl-dev libjansson-dev libjsmn-dev
          libhiredis-dev redis-server python3 cppcheck
          clang-14 libclang-rt-14-dev)

is_installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
for p in "${packages[@]}"; do
	is_installed "$p" || missing+=("$p")
done
# nodejs and npm: a node from elsewhere (e.g. NodeSource, which bundles npm)
# counts; Debian's npm package would conflict with it.
if ! command -v node >/dev/null 2>&1 && ! is_installed nodejs; then
	missing+=(nodejs)
fi
if ! command -v npm >/dev/null 2>&1; then
	missing+=(npm)
fi

if [ "$(id -u)" -eq 0 ]; then
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]}"
		# Do not let postgresql-common create and start a "main" cluster:
		# the tests make their own.
		if ! is_installed postgresql-common; then
			mkdir -p /etc/postgresql-common/createcluster.d
			echo "create_main_cluster = false" \
				>/etc/postgresql-common/createcluster.d/ethindex-test.conf
		fi
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q
		apt-get install -y -q --no-install-recommends "${missing[@]}"
	else
		log "Debian packages present"
	fi

	if ! id -u "$TEST_USER" >/dev/null 2>&1; then
		log "creating user $TEST_USER"
		useradd --system --user-group --create-home \
			--home-dir "/var/lib/$TEST_USER" --shell /usr/sbin/nologin "$TEST_USER"
	fi
elif [ ${#missing[@]} -gt 0 ]; then
	log "missing Debian packages (run as root to install): ${missing[*]}" >&2
	exit 1
fi

# Foundry's anvil and cast, pinned in test/package.json / package-lock.json.
foundry_ok() {
	local bin
	for bin in "$here/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" \
	           "$here/node_modules/@foundry-rs/cast-linux-amd64/bin/cast"; do
		[ -x "$bin" ] || return 1
		"$bin" --version 2>/dev/null | head -n1 | grep -q " $FOUNDRY_VERSION\b" || return 1
	done
}

if foundry_ok; then
	log "anvil and cast $FOUNDRY_VERSION present"
else
	log "installing anvil and cast $FOUNDRY_VERSION into $here/node_modules"
	cd "$here"
	if [ -f package-lock.json ]; then
		npm ci --no-audit --no-fund
	else
		npm install --no-audit --no-fund
	fi
	foundry_ok || { log "anvil/cast $FOUNDRY_VERSION not usable after npm install" >&2; exit 1; }
fi
