"""A blind human comparison of three image systems, offline: the embedded GAN at two truncations and the VAE.

    python examples/human_eval.py               # saves out/human_eval/{gan_psi07,gan_psi10,vae}/, serves the page
    python examples/human_eval.py --no-serve    # only saves the outputs and prints the command
    aigc eval human --report out/human_eval/votes.sqlite

Open the printed address, type a name and vote with the arrow keys (T: tie, B: both bad); stop with Ctrl-C and
start again to resume. Every saved file carries its provenance record, which is how the three folders are matched
by prompt and seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import aigc
from aigc.evaluate import human

PROMPTS = ["a sneaker", "an ankle boot", "a bag", "a dress"]
SEEDS = 3  # per prompt: 4 prompts x 3 seeds = 12 items, x 3 pairs of systems = 36 comparisons per rater

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--out", default="out/human_eval", help="where the systems' folders and the votes go")
parser.add_argument("--port", type=int, default=8600, help="0 picks a free port")
parser.add_argument("--no-serve", action="store_true", help="save the outputs only")
args = parser.parse_args()

root = Path(args.out)
systems = {"gan_psi07": ("gan", {"truncation": 0.7}), "gan_psi10": ("gan", {"truncation": 1.0}),
           "vae": ("vae", {})}
for name, (backend, params) in systems.items():
    gen = aigc.load("image", "default", backend=backend)
    for i, prompt in enumerate(PROMPTS):
        # seeds 0, 1, 2 for every prompt and system: the same items in every folder
        gen.generate(prompt, seed=0, num_outputs=SEEDS, width=64, height=64, **params).save(root / name / f"p{i}.png")
folders = [str(root / name) for name in systems]
db = root / "votes.sqlite"
print("saved", ", ".join(folders))

question = "Which looks more like the prompt?"
if args.no_serve:
    print(f'aigc eval human {" ".join(folders)} --db {db} --question "{question}"')
else:
    sock = human.bind("127.0.0.1", args.port)  # a port in use is an error naming --port
    study = human.open_study(folders, db=db, question=question)
    host, port = sock.getsockname()[:2]
    print(f"http://{host}:{port}/ -- {len(study.tasks)} comparisons; votes go to {db} (Ctrl-C stops)")
    human.serve_forever(study, sock, host="127.0.0.1")
    print(f"aigc eval human --report {db}")
