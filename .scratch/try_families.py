import time, torch
import nflab.flows as F
import nflab.flows.models.resflow, nflab.flows.models.iresnet, nflab.flows.models.idensenet, nflab.flows.models.monotone, nflab.flows.models.implicit  # noqa
torch.manual_seed(0)
for name in ['resflow','iresnet','idensenet','monotone','implicit']:
    for shape in [(2,), (1,8,8)]:
        t=time.time()
        f = F.build(name, shape, preset='small').double()
        x = torch.randn(5,*shape,dtype=torch.float64) if len(shape)==1 else 0.05+0.9*torch.rand(5,*shape,dtype=torch.float64)
        f.train(); z, ld = f(x); (-(F.standard_normal_log_prob(z)+ld).mean()).backward()
        F.hooks.after_optimizer_step(f)
        f.eval(); F.hooks.before_evaluation(f)
        z, ld = f(x)
        xr = f.inverse(z)
        ex = f.exact_logdet(x)
        bf = F.brute_force_logdet(lambda v: f(v)[0], x)
        print(name, shape, f.logdet_kind, 'inv', float((xr-x).abs().max()), 'ld-est', float((ld-ex).abs().max()), 'exact-vs-bf', float((ex-bf).abs().max()), f'{time.time()-t:.1f}s')
