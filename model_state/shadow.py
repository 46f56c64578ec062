"""``python -m model_state.shadow``: the command; the code is :mod:`model_state.offline.shadow`."""

from model_state.offline.shadow import main

if __name__ == "__main__":
    main()
