"""The train stage: the loop (loop.py), what it runs on (setup.py) and the stage that saves and logs (train.py)."""
