"""A client in another language: publishes one MessagePack and one JSON IntegrationMessage
to the bus's ingress with reply_to, waits for both routed replies, and prints them as a
JSON list. Only the documented AMQP contract is used: names, content types, fields.

usage: publish.py URL NAMESPACE TARGET
"""

import json
import sys
import time
import uuid
from datetime import datetime, timezone

import msgpack
import pika


def message(target, n):
    return {
        "message_id": str(uuid.uuid4()),
        "source_system": "cmc_001",
        "target_system": target,
        "message_type": "data_request",
        "payload": {"query": "from python", "n": n},
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "priority": 3,
    }


def main():
    url, namespace, target = sys.argv[1:4]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    replies = channel.queue_declare(queue="", exclusive=True).method.queue

    sent = {}
    for n, (content_type, encode) in enumerate(
        [
            ("application/msgpack", lambda m: msgpack.packb(m, use_bin_type=True)),
            ("application/json", lambda m: json.dumps(m).encode()),
        ]
    ):
        request = message(target, n)
        request["reply_to"] = replies
        channel.basic_publish(
            exchange=f"{namespace}.ingress",
            routing_key="ingress",
            body=encode(request),
            properties=pika.BasicProperties(
                content_type=content_type,
                message_id=request["message_id"],
                reply_to=replies,
                delivery_mode=2,
            ),
            mandatory=True,
        )
        sent[request["message_id"]] = content_type

    answers = []
    deadline = time.time() + 30
    while len(answers) < len(sent) and time.time() < deadline:
        method, properties, body = channel.basic_get(queue=replies, auto_ack=True)
        if method is None:
            time.sleep(0.05)
            continue
        if properties.content_type == "application/msgpack":
            reply = msgpack.unpackb(body, raw=False)
        else:
            reply = json.loads(body)
        answers.append(
            {
                "sent_as": sent.get(properties.correlation_id),
                "correlation_id": properties.correlation_id,
                "content_type": properties.content_type,
                "reply": reply,
            }
        )
    connection.close()
    print(json.dumps(answers))
    return 0 if len(answers) == len(sent) else 1


if __name__ == "__main__":
    sys.exit(main())
