#!/usr/bin/env bash
# Build the ArduPlane SITL binary that terrafix's simulation tests fly against.
#
# Usage: scripts/build_sitl.sh SOURCE_DIR OUT_DIR
#
#   SOURCE_DIR  an ArduPilot source tree (checked: upstream 90700977c553, ArduPlane V4.7.0-dev)
#               with its submodules written out under modules/, and `git rev-parse HEAD`
#               working in it. See ../shared/tools/ardupilot-sitl.md for how to get one
#               from fetch snapshots with ../shared/tools/git-export-tree.py.
#   OUT_DIR     where the build tools and results go, outside this repository:
#                 OUT_DIR/venv             Python venv for waf (empy 3.3.4, pymavlink, ...)
#                 OUT_DIR/bin/arduplane    the SITL binary
#                 OUT_DIR/bin/plane.parm   plane defaults (terrafix looks beside the binary)
#
# Nothing of ArduPilot (GPLv3) goes into the terrafix repository: the sources, the build
# products and the binary all stay outside it, and this script refuses an OUT_DIR inside it.
# Repeated runs are incremental: the venv and `waf configure` are redone only when their
# stamps in OUT_DIR are missing or stale, and `waf plane` only rebuilds what changed.
# At the end it prints the line to export TERRAFIX_ARDUPLANE.
set -euo pipefail

prog="build_sitl.sh"
die() { echo "$prog: error: $*" >&2; exit 1; }

if [ "$#" -ne 2 ]; then
    echo "usage: $0 SOURCE_DIR OUT_DIR" >&2
    exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
recipe="../shared/tools/ardupilot-sitl.md"
exporter="../shared/tools/git-export-tree.py"

[ -d "$1" ] || die "SOURCE_DIR '$1' is not a directory (get an ArduPilot tree: fetch snapshots + $exporter, see $recipe)"
src="$(cd "$1" && pwd -P)"
out="$(realpath -m -- "$2")"

case "$out/" in
    "$repo"/*) die "OUT_DIR '$out' is inside the terrafix repository ($repo); nothing of ArduPilot may go there, choose a folder outside it" ;;
esac
case "$src/" in
    "$repo"/*) die "SOURCE_DIR '$src' is inside the terrafix repository ($repo); keep ArduPilot sources outside it" ;;
esac

# --- the source tree and the submodules `waf plane` for SITL needs ---
required=(
    "wscript:the ArduPilot tree itself (github:blitzy-public-samples/ardupilot-blitzy at 90700977c553d2dfd95a305acf1c3e098e4d9477)"
    "waf:the ArduPilot tree itself (github:blitzy-public-samples/ardupilot-blitzy at 90700977c553d2dfd95a305acf1c3e098e4d9477)"
    "modules/waf/waf-light:submodule modules/waf (github:ArduPilot/waf)"
    "modules/mavlink/message_definitions:submodule modules/mavlink (github:ArduPilot/mavlink)"
    "modules/mavlink/pymavlink/generator:nested submodule modules/mavlink/pymavlink (github:ArduPilot/pymavlink, commit pinned in the mavlink tree)"
    "modules/DroneCAN/DSDL/uavcan:submodule modules/DroneCAN/DSDL (github:dronecan/DSDL)"
    "modules/DroneCAN/dronecan_dsdlc/dronecan_dsdlc.py:submodule modules/DroneCAN/dronecan_dsdlc (github:dronecan/dronecan_dsdlc)"
    "modules/DroneCAN/pydronecan/dronecan:submodule modules/DroneCAN/pydronecan (github:dronecan/pydronecan)"
    "modules/DroneCAN/libcanard/canard.c:submodule modules/DroneCAN/libcanard (github:dronecan/libcanard, lowercase owner)"
    "modules/littlefs/lfs.c:submodule modules/littlefs (github:ArduPilot/littlefs)"
    "modules/lwip/src:submodule modules/lwip (github:ArduPilot/lwip; pinned commit missing from the snapshot, its newest commit works)"
    "Tools/autotest/models/plane.parm:the ArduPilot tree itself (plane defaults)"
)
missing=0
for item in "${required[@]}"; do
    rel="${item%%:*}"
    what="${item#*:}"
    if [ ! -e "$src/$rel" ]; then
        echo "$prog: error: missing $src/$rel -- $what." >&2
        missing=1
    fi
done
if [ "$missing" -ne 0 ]; then
    die "SOURCE_DIR is incomplete. Export each missing tree at the commit pinned by
    git --git-dir=GITDIR ls-tree REV modules/   (and modules/DroneCAN/)
from a fetch snapshot with: python3 $exporter GITDIR COMMIT $src/PATH
(see $recipe)"
fi

# --- waf runs `git rev-parse HEAD` in the tree ---
if ! head="$(git -C "$src" rev-parse HEAD 2>/dev/null)"; then
    die "'git -C $src rev-parse HEAD' fails; waf needs it. Make the exported tree a git repository:
    git -C $src init
    echo /work/.mirror/OWNER+NAME/repo/objects > $src/.git/objects/info/alternates
    git -C $src update-ref refs/heads/master COMMIT
    git -C $src symbolic-ref HEAD refs/heads/master
(see $recipe)"
fi

mkdir -p "$out/bin"

# --- Python venv for waf and the code generators ---
venv="$out/venv"
pkgs=(empy==3.3.4 pexpect future lxml pymavlink dronecan)
venv_stamp="$out/.venv-done"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv_stamp" ] || [ "$(cat "$venv_stamp")" != "${pkgs[*]}" ]; then
    echo "$prog: creating venv $venv" >&2
    rm -f "$venv_stamp"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "${pkgs[@]}"
    printf '%s\n' "${pkgs[*]}" > "$venv_stamp"
fi
export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"

cd "$src"

# --- configure (once per source HEAD) ---
conf_stamp="$out/.configured"
conf_want="$src $head sitl"
if [ ! -f "$conf_stamp" ] || [ "$(cat "$conf_stamp")" != "$conf_want" ] || [ ! -f build/c4che/sitl_cache.py ]; then
    echo "$prog: ./waf configure --board sitl" >&2
    rm -f "$conf_stamp"
    ./waf configure --board sitl --no-submodule-update
    printf '%s\n' "$conf_want" > "$conf_stamp"
fi

# --- build (waf is incremental by itself) ---
./waf plane -j"$(nproc)"

bin="build/sitl/bin/arduplane"
[ -x "$bin" ] || die "waf finished but $src/$bin is missing"
install -m 0755 "$bin" "$out/bin/arduplane.tmp"
mv -f "$out/bin/arduplane.tmp" "$out/bin/arduplane"
install -m 0644 Tools/autotest/models/plane.parm "$out/bin/plane.parm"

echo "$prog: built $out/bin/arduplane (ArduPilot $head)" >&2
echo "export TERRAFIX_ARDUPLANE=$out/bin/arduplane"
