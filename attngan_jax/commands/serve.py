"""``python -m attngan_jax.commands.serve``: the console script ``attngan-serve``.

The local page with the shipped shapes model, or ``--workdir``'s: ``eval.py --mode=serve``
(:mod:`attngan_jax.commands.eval`; every flag of that program but ``--mode``).
"""

if __name__ == "__main__":
    from attngan_jax import commands

    commands.attngan_serve()
