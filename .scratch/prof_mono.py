import time, torch
import nflab.flows as F
torch.manual_seed(0)
f = F.build('monotone', (1,8,8), preset='small').double()
x = 0.05+0.9*torch.rand(5,1,8,8,dtype=torch.float64)
f.train(); f(x)
f.eval(); F.hooks.before_evaluation(f)
def T(label, fn):
    t=time.time(); r=fn(); print(label, f'{time.time()-t:.2f}s'); return r
with torch.no_grad():
    z, ld = T('fwd eval (rr-20)', lambda: f(x))
    T('inverse', lambda: f.inverse(z))
    T('exact_logdet', lambda: f.exact_logdet(x))
T('brute force', lambda: F.brute_force_logdet(lambda v: f(v)[0], x))
f.train()
T('train fwd+bwd', lambda: f.log_prob(x).mean().backward())
print(f.training_metrics() if hasattr(f,'training_metrics') else F.hooks.training_metrics(f))
