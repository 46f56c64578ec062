"""``python -m model_state.retrain``: the command; the code is
:mod:`model_state.offline.retrain`."""

from model_state.offline.retrain import main

if __name__ == "__main__":
    main()
