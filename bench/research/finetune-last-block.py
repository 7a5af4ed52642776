# Fine-tunes darknet-tiny's last layers + a head in numpy (OpenBLAS), to learn whether fine-tuning
# pays before building it into finetune. Input: bench/research/dump-last-block.ts.
#   python3 bench/research/finetune-last-block.py '{"ntrain":2,"lr":1e-5,"epochs":6,"track":1}'
# ntrain: how many of conv2d_11 … conv2d_15 are trained (from the last). Stage 1 trains the head on
# the frozen layers (as `finetune train`); stage 2 trains those layers (BatchNormalization folded
# in) with the head at a lower rate, keeping the epoch of least valid/ loss. Both stages are scored
# on kaggle-flat (3000 photos) and valid/, with flip TTA.
import numpy as np, sys, time, json
cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
DIR = cfg.get('dir', '/tmp/finetune-last-block'); S = 288; H = S // 16; P = H * H
CONVS = [('conv2d_11', 1, 256, 64), ('conv2d_12', 3, 64, 512), ('conv2d_13', 1, 512, 64), ('conv2d_14', 3, 64, 512), ('conv2d_15', 1, 512, 128)]
NTRAIN = cfg.get('ntrain', 5)  # how many of the last convs are trained
CIN = 256
def load(name, flip): return np.fromfile(f'{DIR}/{name}.{"flip" if flip else "plain"}.bin', dtype=np.float32).reshape(-1, H, H, CIN)
def labels(name): return np.fromfile(f'{DIR}/{name}.labels.bin', dtype=np.int32)
D = {n: (load(n, False), load(n, True), labels(n)) for n in ['train', 'valid', 'kflat']}
def w(name, i): return np.fromfile(f'{DIR}/{name}.{i}.bin', dtype=np.float32)
ALPHA = 0.1
params = {}
for i, (name, k, cin, cout) in enumerate(CONVS):
    W = w(name, 0).reshape(k * k * cin, cout); bn = 'batch_normalization_' + name.split('_')[1]
    g, b, m, v = (w(bn, j) for j in range(4)); s = g / np.sqrt(v + 1e-3)
    params[f'W{i}'] = (W * s).astype(np.float32); params[f'b{i}'] = (b - m * s).astype(np.float32)
def im2col(X, cin):
    N = X.shape[0]; Xp = np.pad(X, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.empty((N, H, H, 3, 3, cin), np.float32)
    for kh in range(3):
        for kw in range(3): cols[:, :, :, kh, kw, :] = Xp[:, kh:kh + H, kw:kw + H, :]
    return cols.reshape(N * P, 9 * cin)
def col2im(dC, N, cin):
    dC = dC.reshape(N, H, H, 3, 3, cin); dXp = np.zeros((N, H + 2, H + 2, cin), np.float32)
    for kh in range(3):
        for kw in range(3): dXp[:, kh:kh + H, kw:kw + H, :] += dC[:, :, :, kh, kw, :]
    return dXp[:, 1:-1, 1:-1, :].reshape(N * P, cin)
def trunk(X, p, keep=False):
    N = X.shape[0]; A = X.reshape(N * P, CIN); cache = []
    for i, (name, k, cin, cout) in enumerate(CONVS):
        Cm = im2col(A.reshape(N, H, H, cin), cin) if k == 3 else A
        Z = Cm @ p[f'W{i}'] + p[f'b{i}']; A = np.where(Z > 0, Z, ALPHA * Z)
        if keep: cache.append((Cm, Z))
    A2r = A.reshape(N, P, 128); f = np.concatenate([A2r.mean(1), A2r.max(1)], 1) if cfg.get('pool') == 'avgmax' else A2r.mean(1)
    return (f, (cache, A2r)) if keep else f
def feats(X, p, bs=64): return np.concatenate([trunk(X[i:i + bs], p) for i in range(0, len(X), bs)])
def softmax(z): z = z - z.max(1, keepdims=True); e = np.exp(z); return e / e.sum(1, keepdims=True)
def head_fwd(f, hp, mask=None):
    fs = (f - hp['mu']) / hp['sd']; h = np.maximum(fs @ hp['Wh'] + hp['bh'], 0)
    hm = h * mask if mask is not None else h
    return softmax(hm @ hp['Wo'] + hp['bo']), (fs, h, hm)
def metrics(pr, y): return (pr.argmax(1) == y).mean(), -np.log(np.clip(pr[np.arange(len(y)), y], 1e-7, 1)).mean()
class Adam:
    def __init__(s, params, lrs): s.p = params; s.lrs = lrs; s.m = {k: 0 * v for k, v in params.items()}; s.v = {k: 0 * v for k, v in params.items()}; s.t = 0
    def step(s, g):
        s.t += 1
        for k in s.p:
            gk = g[k]; s.m[k] = 0.9 * s.m[k] + 0.1 * gk; s.v[k] = 0.999 * s.v[k] + 0.001 * gk * gk
            s.p[k] -= s.lrs[k] * (s.m[k] / (1 - 0.9 ** s.t)) / (np.sqrt(s.v[k] / (1 - 0.999 ** s.t)) + 1e-7)
rng = np.random.default_rng(cfg.get('seed', 42))
def glorot(a, b): l = np.sqrt(6 / (a + b)); return rng.uniform(-l, l, (a, b)).astype(np.float32)
Xtr, Xtrf, ytr = D['train']; Xv, Xvf, yv = D['valid']; Xk, Xkf, yk = D['kflat']
t0 = time.time(); ftr = feats(Xtr, params); fv = feats(Xv, params)
print('feats', time.time() - t0, flush=True)
HID = 256; DROP = 0.5; bs = 32
hp = {'mu': ftr.mean(0), 'sd': ftr.std(0) + 1e-6, 'Wh': glorot(ftr.shape[1], HID), 'bh': np.zeros(HID, np.float32), 'Wo': glorot(HID, 2), 'bo': np.zeros(2, np.float32)}
HK = ['Wh', 'bh', 'Wo', 'bo']
def head_grads(pr, y, c, hp):
    fs, h, hm = c; B = len(y); d = pr.copy(); d[np.arange(B), y] -= 1; d /= B
    g = {'Wo': hm.T @ d, 'bo': d.sum(0)}; dh = (d @ hp['Wo'].T) * (hm > 0) * (hm / np.maximum(h, 1e-12))
    g['Wh'] = fs.T @ dh; g['bh'] = dh.sum(0); return g, (dh @ hp['Wh'].T) / hp['sd']
def evalset(p, X, Xf, y): pr = (head_fwd(feats(X, p), hp)[0] + head_fwd(feats(Xf, p), hp)[0]) / 2; return metrics(pr, y)
opt = Adam({k: hp[k] for k in HK}, {k: 1e-3 for k in HK}); best = (9, None)
for ep in range(10):
    idx = rng.permutation(len(ftr))
    for i in range(0, len(idx), bs):
        j = idx[i:i + bs]; mask = (rng.random((len(j), HID)) < 1 - DROP) / (1 - DROP)
        pr, c = head_fwd(ftr[j], hp, mask); g, _ = head_grads(pr, ytr[j], c, hp); opt.step(g)
    vl = metrics(head_fwd(fv, hp)[0], yv)[1]
    if vl < best[0]: best = (vl, {k: hp[k].copy() for k in HK})
hp.update(best[1])
mk, mv = evalset(params, Xk, Xkf, yk), evalset(params, Xv, Xvf, yv)
print('STAGE1 kflat %.2f%% %.4f | valid %.2f%% %.4f | %.0fs' % (mk[0] * 100, mk[1], mv[0] * 100, mv[1], time.time() - t0), flush=True)
LR = cfg.get('lr', 1e-5); EP = cfg.get('epochs', 6); first = len(CONVS) - NTRAIN
TK = [f'{a}{i}' for i in range(first, len(CONVS)) for a in 'Wb']
allp = {**{k: params[k] for k in TK}, **{k: hp[k] for k in HK}}
lrs = {**{k: LR for k in TK}, **{k: cfg.get('headlr', LR) for k in HK}}
opt = Adam(allp, lrs); best = (metrics(head_fwd(fv, hp)[0], yv)[1], {k: v.copy() for k, v in allp.items()}, -1)
for ep in range(EP):
    idx = rng.permutation(len(Xtr)); t1 = time.time()
    for i in range(0, len(idx), bs):
        j = idx[i:i + bs]; flip = rng.random(len(j)) < 0.5; B = len(j)
        X = np.where(flip[:, None, None, None], Xtrf[j], Xtr[j])
        f, (cache, A2r) = trunk(X, params, keep=True)
        mask = (rng.random((B, HID)) < 1 - DROP) / (1 - DROP)
        pr, c = head_fwd(f, hp, mask); g, df = head_grads(pr, ytr[j], c, hp)
        dA = np.repeat(df[:, None, :] / P, P, 1).reshape(B * P, 128)
        for i2 in range(len(CONVS) - 1, first - 1, -1):
            name, k, cin, cout = CONVS[i2]; Cm, Z = cache[i2]
            dZ = dA * np.where(Z > 0, 1, ALPHA).astype(np.float32)
            g[f'W{i2}'] = Cm.T @ dZ; g[f'b{i2}'] = dZ.sum(0)
            if i2 > first:
                dC = dZ @ params[f'W{i2}'].T; dA = col2im(dC, B, cin) if k == 3 else dC
        opt.step(g)
    vl = metrics(head_fwd(feats(Xv, params), hp)[0], yv)[1]
    mk = evalset(params, Xk, Xkf, yk) if cfg.get('track') else (0, 0)
    print('ft ep', ep, 'val loss %.4f' % vl, 'kflat %.2f%% %.4f' % (mk[0] * 100, mk[1]), '%.0fs' % (time.time() - t1), flush=True)
    if vl < best[0]: best = (vl, {k: v.copy() for k, v in allp.items()}, ep)
for k, v in best[1].items(): allp[k][...] = v
mk, mv = evalset(params, Xk, Xkf, yk), evalset(params, Xv, Xvf, yv)
print('STAGE2 (best epoch %d) kflat %.2f%% %.4f | valid %.2f%% %.4f | %.0fs' % (best[2], mk[0] * 100, mk[1], mv[0] * 100, mv[1], time.time() - t0), flush=True)
