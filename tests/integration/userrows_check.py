"""userrows_check.py SRC NEW OLD...

Scale-out's user rows travel with their partition (daemon/userrows.h): NEW
is the snapshot of an instance that restored partitions from the changelog
after the OLD instances (snapshots) had trained their users.  For every
user-table row some OLD instance used, the OLD row is the one of the
instance that used it last; NEW's row is then
  - equal:    same last use and bit-identical weights (restored and not
              trained since: the old owner's published row),
  - ahead:    used later in NEW (restored, then trained further; printed
              with how many are within cosine 0.9 of the old row: a hint
              only, an initial row trained a little is often that close too,
              initial rows being the same on every instance),
  - behind:   older or dead in NEW (the old owner trained it after its last
              publish, e.g. its final partial minibatch; or not carried),
  - mismatch: same last use, other weights.
Prints the counts; exits 1 when fewer than max(10, 1/20) of the rows are
equal, more than 1/20 mismatch or more than 1/4 are behind; 2 when it
cannot run.  Without the rows carried NEW holds no old owner's row: none
equal, the rows NEW did not train dead (behind).
"""
import sys

import numpy as np

args = sys.argv[1:]
if len(args) < 3:
    print(__doc__, file=sys.stderr)
    sys.exit(2)
sys.path.insert(0, args[0] + "/tools")
import mtld_reader  # noqa: E402

INT64_MIN = np.iinfo(np.int64).min
UW, UL = "emb.user", "emb.user.last_used"
new = mtld_reader.load(args[1])
olds = [mtld_reader.load(p) for p in args[2:]]
lus = np.stack([s.tensors[UL].reshape(-1) for s in olds])
best = np.argmax(lus, axis=0)
best_lu = lus.max(axis=0)
used = best_lu != INT64_MIN
best_w = np.zeros_like(new.tensors[UW])
for i, s in enumerate(olds):
    sel = used & (best == i)
    best_w[sel] = s.tensors[UW][sel]
nlu = new.tensors[UL].reshape(-1)
same_lu = used & (nlu == best_lu)
same_w = np.all(new.tensors[UW].view(np.uint32) == best_w.view(np.uint32), axis=1)
equal = int(np.sum(same_lu & same_w))
mismatch = int(np.sum(same_lu & ~same_w))
ahead_sel = used & (nlu != INT64_MIN) & (nlu > best_lu)
ahead = int(np.sum(ahead_sel))
a = new.tensors[UW][ahead_sel].astype(np.float64)
b = best_w[ahead_sel].astype(np.float64)
den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
cos = np.sum(a * b, axis=1) / np.where(den > 0, den, 1.0)
continuing = int(np.sum((den > 0) & (cos >= 0.9)))
behind = int(np.sum(used)) - equal - mismatch - ahead
n = int(np.sum(used))
print(
    "user rows of %d used by the old owners: %d equal, %d ahead (%d continuing), %d behind, %d mismatch"
    % (n, equal, ahead, continuing, behind, mismatch)
)
if n == 0:
    print("userrows_check: no user row used by the old owners", file=sys.stderr)
    sys.exit(1)
if equal < max(10, n / 20):
    print(
        "userrows_check: only %d of %d rows equal the old owners' published rows: the rows did not travel"
        % (equal, n),
        file=sys.stderr,
    )
    sys.exit(1)
if mismatch * 20 > n:
    print("userrows_check: %d rows with the same last use but other weights" % mismatch, file=sys.stderr)
    sys.exit(1)
if behind * 4 > n:
    print("userrows_check: %d of %d rows older or dead in the new owner" % (behind, n), file=sys.stderr)
    sys.exit(1)
