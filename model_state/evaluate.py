"""``python -m model_state.evaluate``: the command; the code is
:mod:`model_state.offline.evaluate`."""

from model_state.offline.evaluate import main

if __name__ == "__main__":
    main()
