"""Publishes COUNT numbered messages to CHANNEL through the Python library
(py/), each with its own idempotency key, one after another; then sends
every key again, as a backend does whose answer was lost. One JSON line per
publish: {"i", "epoch", "offset"} or {"i", "error"}; then the channel's
history, {"history": {"epoch", "complete", "publications": [[offset, text], ...]}};
then {"done": true}.

    python3 publish.py API[,API...] SECRET CHANNEL COUNT
"""

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "py" / "src"))
from slip_sockets import ControlApiError, Publisher  # noqa: E402

PAUSE_SECONDS = 0.02


def main():
    apis, secret, channel, count = sys.argv[1:5]
    publisher = Publisher(apis.split(","), secret)

    def one(i, again):
        try:
            published = publisher.publish(channel, f"m{i}", key=f"{channel}-m{i}", deadline=30)
            line = {"i": i, "epoch": published.epoch, "offset": published.offset, "again": again}
        except ControlApiError as e:
            line = {"i": i, "error": str(e), "again": again}
        print(json.dumps(line), flush=True)

    for i in range(int(count)):
        one(i, False)
        time.sleep(PAUSE_SECONDS)
    for i in range(int(count)):
        one(i, True)
    # What the channel's (new) owner holds now.
    history = publisher.history(channel)
    texts = [[p.offset, p.text] for p in history.publications]
    print(json.dumps({"history": {"epoch": history.epoch, "complete": history.complete, "publications": texts}}),
          flush=True)
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main()
