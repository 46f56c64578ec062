"""``python -m model_state.train``: the command; the code is :mod:`model_state.offline.train`."""

from model_state.offline.train import main

if __name__ == "__main__":
    main()
