"""Deliberate bugs for ci/sim-mutations.sh: each replaces one exact passage of one source file.

`mutate.py NAME` applies one and prints the file it changed (restore it with git checkout);
`mutate.py --list` prints the names.
"""
import sys

MUTS = {
 "log-directory-not-durable": ("engine/src/log/core.rs",
   """crate::io::create_dir_durable(vfs.as_ref(), dir)""",
   """vfs.create_dir_all(dir)"""),
 "log-acks-before-fdatasync": ("engine/src/log/core.rs",
   """                        a.file.write_all_at(data, pos).map_err(io("write"))?;
                        a.file.sync_data().map_err(io("fdatasync"))?;""",
   """                        a.file.write_all_at(data, pos).map_err(io("write"))?;"""),
 "recovery-accepts-bad-checksum": ("engine/src/log/format.rs",
   """    if frame_crc(f, &b[FRAME_LEN..end]) != u32_at(f, 4) {""",
   """    if false && frame_crc(f, &b[FRAME_LEN..end]) != u32_at(f, 4) {"""),
 "leader-commits-without-quorum": ("server/src/zab/peer.rs",
   """            if !entry.get().acks.is_quorum(&core.cfg) {
                break;
            }""",
   """            let acks = &entry.get().acks;
            if !acks.is_quorum(&core.cfg) && acks.low == 0 && acks.high.is_empty() {
                break;
            }"""),
 "follower-acks-on-receipt": ("server/src/zab/peer.rs",
   """                core.history.push(z, p.data.clone());
                out.push(Command::AppendTxns(vec![(z, p.data)]));
                self.pending_acks.push_back(z);
                Next::Stay""",
   """                core.history.push(z, p.data.clone());
                out.push(Command::AppendTxns(vec![(z, p.data)]));
                Core::send(out, self.leader, QuorumPacket::new(PacketType::Ack, z.to_wire()));
                Next::Stay"""),
 "learner-commits-on-proposal": ("server/src/zab/peer.rs",
   """                core.history.push(z, p.data.clone());
                out.push(Command::AppendTxns(vec![(z, p.data)]));
                self.pending_acks.push_back(z);
                Next::Stay""",
   """                core.history.push(z, p.data.clone());
                out.push(Command::AppendTxns(vec![(z, p.data)]));
                self.pending_acks.push_back(z);
                out.push(Command::Commit(z));
                Next::Stay"""),
 "diff-skips-a-txn": ("server/src/zab/peer.rs",
   """            for (z, data) in core.history.entries() {
                if *z > from && *z <= sync_point {""",
   """            let mut skipped = false;
            for (z, data) in core.history.entries() {
                if *z > from && *z <= sync_point && std::mem::replace(&mut skipped, true) {"""),
 "leader-counts-own-ack-early": ("server/src/zab/peer.rs",
   """                self.outstanding.insert(zxid, Proposal { data, acks: Acks::default() });""",
   """                let mut acks = Acks::default();
                acks.insert(core.id);
                self.outstanding.insert(zxid, Proposal { data, acks });"""),
 # Mutations of the pipeline above the replica: ci/sim-mutations.sh runs `corral-sim
 # --pipelines` (client workloads against ensembles of pipelines) for names starting "pipeline-".
 "pipeline-leader-sync-skips-in-flight": ("server/src/pipeline/mod.rs",
   """            let sync_waits = matches!(req, Request::Sync(_)) && self.replica.in_flight() > 0;""",
   """            let sync_waits = false;"""),
 "pipeline-learner-reply-skips-order": ("server/src/pipeline/mod.rs",
   """                                q.iter_mut().find(|x| matches!(x, Queued::Write(None)))""",
   """                                q.iter_mut().find(|_| false)"""),
 "pipeline-learner-drops-watch-events": ("server/src/pipeline/mod.rs",
   """                if events.is_empty() {""",
   """                if events.is_empty() || !a.local {"""),
 "pipeline-closing-kept-across-roles": ("server/src/pipeline/mod.rs",
   """            // A close in flight was dropped with the proposals: if it never commits, the
            // session is still open, and a later leadership here must be able to expire it.
            s.closing = false;""",
   """            // (mutated: closing flags kept)"""),
 "pipeline-sync-answered-by-connection-layer": ("server/src/pipeline/mod.rs",
   """    if !reads::is_read(job.req)
        || matches!(job.req, Request::Sync(_))
        || conn.pending.load(Ordering::Acquire) != 0""",
   """    if !reads::is_read(job.req) || conn.pending.load(Ordering::Acquire) != 0"""),
 "pipeline-stale-view-after-trunc": ("server/src/pipeline/mod.rs",
   """                    self.commit_applied(std::mem::take(&mut applied));
                    self.republish();""",
   """                    self.commit_applied(std::mem::take(&mut applied));
                    let _ = Self::republish;"""),
}
if sys.argv[1:] == ["--list"]:
    print("\n".join(MUTS))
    sys.exit(0)
name = sys.argv[1]
path, old, new = MUTS[name]
text = open(path).read()
if text.count(old) != 1:
    sys.exit(f"{name}: the passage to replace is not in {path} exactly once; update ci/mutations/mutate.py")
open(path, "w").write(text.replace(old, new))
print(path)
