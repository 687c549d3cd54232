"""``python -m edgekit`` runs the CLI.

Guarded, because child processes started with multiprocessing's spawn (:mod:`edgekit.child_process`)
re-import the parent's ``__main__``: there it must do nothing.
"""

if __name__ == "__main__":
    from edgekit.cli import main

    main()
