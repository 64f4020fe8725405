import time, torch
import nflab.flows as F
torch.manual_seed(0)
for name in ['resflow','iresnet','idensenet']:
    for shape in [(2,), (1,8,8)]:
        f = F.build(name, shape, preset='small').double()
        x = torch.randn(5,*shape,dtype=torch.float64) if len(shape)==1 else 0.05+0.9*torch.rand(5,*shape,dtype=torch.float64)
        f.train(); z, ld = f(x); (-(F.standard_normal_log_prob(z)+ld).mean()).backward()
        f.eval(); F.hooks.before_evaluation(f); z, ld = f(x); xr = f.inverse(z); ex = f.exact_logdet(x); bf = F.brute_force_logdet(lambda v: f(v)[0], x)
def T(label, fn):
    t=time.time(); r=fn(); print(label, f'{time.time()-t:.2f}s', F.hooks.training_metrics(f), flush=True); return r
f = F.build('monotone', (1,8,8), preset='small').double()
x = 0.05+0.9*torch.rand(5,1,8,8,dtype=torch.float64)
f.train(); z, ld = T('fwd', lambda: f(x)); T('bwd', lambda: (-(F.standard_normal_log_prob(z)+ld).mean()).backward())
T('after step', lambda: F.hooks.after_optimizer_step(f))
f.eval(); T('before eval', lambda: F.hooks.before_evaluation(f))
with torch.no_grad():
    z, ld = T('fwd eval (rr-20)', lambda: f(x))
    T('inverse', lambda: f.inverse(z))
    T('exact_logdet', lambda: f.exact_logdet(x))
T('brute force', lambda: F.brute_force_logdet(lambda v: f(v)[0], x))
