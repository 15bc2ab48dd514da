#!/bin/bash
# usage: capture.sh ADMINPORT OUTDIR
# Captures every primary name and alias of ZooKeeper 3.8.0's AdminServer commands.
# Order: read-only commands first; set_trace_mask and the *_reset commands last so
# that statistics are captured before they are reset.
set -u
P=$1; OUT=$2; mkdir -p "$OUT/aliases"
W=/tmp/zkadmin-work
get() { # path file
  curl -sS -i --max-time 20 "http://127.0.0.1:$P$1" > "$2" 2>&1 || echo "curl exit $?" >> "$2"
}
LATE="set_trace_mask connection_stat_reset observer_connection_stat_reset stat_reset"
while read -r prim aliases; do
  case " $LATE " in *" $prim "*) continue;; esac
  get "/commands/$prim" "$OUT/$prim.txt"
  for a in $aliases; do get "/commands/$a" "$OUT/aliases/$a.txt"; done
done < $W/names.txt
# listing, edge cases
get "/commands" "$OUT/_listing.txt"
get "/commands/" "$OUT/_listing-slash.txt"
get "/commands/nosuch" "$OUT/_unknown-nosuch.txt"
get "/commands/RUOK" "$OUT/_unknown-uppercase-RUOK.txt"
get "/commands/ruok/extra" "$OUT/_unknown-ruok-extra.txt"
get "/" "$OUT/_root.txt"
get "/commands/ruok?x=1&x=2" "$OUT/_ruok-with-query.txt"
curl -sS -i --max-time 20 -X POST "http://127.0.0.1:$P/commands/ruok" > "$OUT/_post-ruok.txt" 2>&1
curl -sS -i --max-time 20 -X POST -d 'traceMask=5' "http://127.0.0.1:$P/commands/stmk" > "$OUT/_post-stmk.txt" 2>&1
curl -sS -i --max-time 20 -I "http://127.0.0.1:$P/commands/ruok" > "$OUT/_head-ruok.txt" 2>&1
curl -sS -i --max-time 20 -X TRACE "http://127.0.0.1:$P/commands/ruok" > "$OUT/_trace-ruok.txt" 2>&1
# trace mask: no arg, bad arg, good arg via both names, then gtmk shows it
get "/commands/set_trace_mask" "$OUT/set_trace_mask.txt"
get "/commands/stmk?traceMask=abc" "$OUT/_stmk-bad-arg.txt"
get "/commands/stmk?traceMask=" "$OUT/_stmk-empty-arg.txt"
get "/commands/stmk?traceMask=0x10" "$OUT/_stmk-hex-arg.txt"
get "/commands/stmk?tracemask=5" "$OUT/_stmk-wrong-case-param.txt"
get "/commands/stmk" "$OUT/aliases/stmk.txt"
get "/commands/set_trace_mask?traceMask=5" "$OUT/_set_trace_mask-5.txt"
get "/commands/stmk?traceMask=5" "$OUT/_stmk-5.txt"
get "/commands/gtmk" "$OUT/_gtmk-after-stmk-5.txt"
get "/commands/stmk?traceMask=306" "$OUT/_stmk-306-restore.txt"
# resets last
for c in connection_stat_reset observer_connection_stat_reset stat_reset; do
  get "/commands/$c" "$OUT/$c.txt"
  for a in $(grep "^$c " $W/names.txt | cut -d' ' -f2-); do get "/commands/$a" "$OUT/aliases/$a.txt"; done
done
get "/commands/srvr" "$OUT/_srvr-after-reset.txt"
