"""Publishes through the GRIP endpoint with the unmodified Python GRIP
library (PyPI `gripcontrol`), as a backend written for Pushpin does.

    python3 publish.py CONTROL_URL KEY CHANNEL text|binary|close [ISSUER]

Prints "published" on success, or the library's error and exits 1.
"""

import sys

from gripcontrol import GripPubControl, WebSocketMessageFormat
from pubcontrol import Item


def main():
    control_uri, key, channel, kind = sys.argv[1:5]
    issuer = sys.argv[5] if len(sys.argv) > 5 else "my-app"
    config = {"control_uri": control_uri, "control_iss": issuer}
    if key:
        config["key"] = key
    pub = GripPubControl(config)
    if kind == "text":
        item = Item(WebSocketMessageFormat("hello from gripcontrol"), id="2", prev_id="1")
    elif kind == "binary":
        item = Item(WebSocketMessageFormat(b"\x00\x01\xfe", binary=True))
    elif kind == "close":
        item = Item(WebSocketMessageFormat(action="close", code=4001, reason="done"))
    else:
        raise SystemExit("unknown kind " + kind)
    try:
        pub.publish(channel, item, blocking=True)
    except Exception as e:  # the library raises ValueError with the status and body
        print(e)
        sys.exit(1)
    print("published")


if __name__ == "__main__":
    main()
