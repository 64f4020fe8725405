import time, torch
import nflab.flows as F
torch.manual_seed(0)
def T(label, fn):
    t=time.time(); r=fn(); print(label, f'{time.time()-t:.2f}s', flush=True); return r
f = T('build', lambda: F.build('monotone', (1,8,8), preset='small').double())
x = 0.05+0.9*torch.rand(5,1,8,8,dtype=torch.float64)
f.train(); z, ld = T('fwd', lambda: f(x)); T('bwd', lambda: (-(F.standard_normal_log_prob(z)+ld).mean()).backward())
T('after step', lambda: F.hooks.after_optimizer_step(f))
f.eval(); T('before eval', lambda: F.hooks.before_evaluation(f))
