# Sourced by the scripts that run Windows programs: one Wine prefix for
# mproc, prepared once, and one wineserver kept alive for the whole run so
# each Windows process starts in a fraction of a second instead of seconds.
export WINEDEBUG=-all
export WINEPREFIX="${WINEPREFIX:-$HOME/.cache/mproc-wine}"
export WINEDLLOVERRIDES="mscoree,mshtml="
mkdir -p "$WINEPREFIX"
wine_start() {
  if [ ! -f "$WINEPREFIX/system.reg" ]; then
    echo "wine: preparing a prefix in $WINEPREFIX (first run only)"
    wineboot -i >/dev/null 2>&1 || true
  fi
  wineserver -p >/dev/null 2>&1 </dev/null &
}
wine_stop() {
  wineserver -k >/dev/null 2>&1 || true
}
