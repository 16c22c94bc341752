"""Sample images, serve the local page, or compute metrics (attngan_jax/commands/eval.py).

    python eval.py --mode=serve                 # the local page with the shipped shapes model
    python eval.py --mode=sample --workdir=runs/shapes --captions=captions.txt --outdir=out
    python eval.py --mode=metrics --workdir=runs/shapes --data_dir=data/shapes

Installed, the same program is ``attngan-eval`` (``attngan-serve`` is ``--mode=serve``).
Every flag and example: ``python eval.py --help``, docs/evaluation.md.
"""

if __name__ == "__main__":
    from attngan_jax import commands

    commands.attngan_eval()
