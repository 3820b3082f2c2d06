"""Human activity for the benches: `count` events of team `payments` over the last two weeks
(none in the last hour), spread over the kinds given as class/environment/service, as the
JSON lines `warden events import` reads. Seeded, so every run imports the same history.

Usage: python3 scripts/bench/humans.py COUNT CLASS/ENV/SERVICE...
"""
import json
import random
import sys
import time

count, kinds = int(sys.argv[1]), [k.split("/") for k in sys.argv[2:]]
random.seed(1)
now = time.time()
for i in range(count):
    t = now - random.uniform(3600, 14 * 86400)
    cls, env, service = kinds[i % len(kinds)]
    print(json.dumps({"source": "bench", "source_id": f"e{i}", "actor_kind": "human", "actor_id": f"human-{i % 7}",
        "team": "payments", "class": cls, "environment": env,
        "service": service, "targets": [f"deployment/{service}"], "change_size": random.randrange(1, 400),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))}))
