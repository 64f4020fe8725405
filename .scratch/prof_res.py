import cProfile, pstats, torch, time
import nflab.flows as F
torch.manual_seed(0)
f = F.build('resflow', (1,8,8), preset='small').double()
x = 0.05+0.9*torch.rand(6,1,8,8,dtype=torch.float64)
f.train(); f(x); f.eval(); F.hooks.before_evaluation(f)
F.hooks.configure_estimator(f, {"kind": "exact"}, training=False)
t=time.time(); z, ld = f(x); print('fwd exact', time.time()-t)
t=time.time(); bf = F.brute_force_logdet(lambda v: f(v)[0], x); print('bf', time.time()-t)
cProfile.run('F.brute_force_logdet(lambda v: f(v)[0], x)', '/tmp/prof.out')
pstats.Stats('/tmp/prof.out').sort_stats('cumulative').print_stats(18)
