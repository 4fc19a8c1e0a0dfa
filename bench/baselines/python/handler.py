"""The seed system's `$connect` handler, the way most Python samples write it: boto3, run
under awslambdaric. It does the same DynamoDB writes as the Rust `connect` handler:

* one TransactWriteItems on the connections table: the connection (CONN#id / META) and its
  lobby membership, both views (ROOM#lobby / CONN#id and CONN#id / ROOM#lobby);
* one PutItem on the audit table (CONN#id / <time>#<id>, kind "connect").

Only the benchmark runs it (`make bench`): it is the comparison, not part of the product.
"""

import os
import secrets
import time
from datetime import datetime, timezone

import boto3

CONNECTIONS_TABLE = os.environ["CONNECTIONS_TABLE"]
AUDIT_TABLE = os.environ["AUDIT_TABLE"]
AUDIT_RETENTION_SECONDS = int(os.environ["AUDIT_RETENTION_DAYS"]) * 86400
CONNECTION_TTL_SECONDS = int(os.environ.get("CONNECTION_TTL_SECONDS", "10800"))
LOBBY = "lobby"

# Created once per execution environment, outside the handler, as AWS recommends.
dynamodb = boto3.client("dynamodb")


def _iso8601(now):
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def connect(event, context):
    request = event["requestContext"]
    connection_id = request["connectionId"]
    user = (request.get("authorizer") or {}).get("principalId")
    now = datetime.now(timezone.utc)
    at = _iso8601(now)
    epoch = int(now.timestamp())
    expires = {"N": str(epoch + CONNECTION_TTL_SECONDS)}

    meta = {
        "pk": {"S": f"CONN#{connection_id}"},
        "sk": {"S": "META"},
        "connectionId": {"S": connection_id},
        "connectedAt": {"S": at},
        "expiresAt": expires,
    }
    if user:
        meta["user"] = {"S": user}
    by_room = {
        "pk": {"S": f"ROOM#{LOBBY}"},
        "sk": {"S": f"CONN#{connection_id}"},
        "connectionId": {"S": connection_id},
        "expiresAt": expires,
    }
    by_connection = {
        "pk": {"S": f"CONN#{connection_id}"},
        "sk": {"S": f"ROOM#{LOBBY}"},
        "room": {"S": LOBBY},
        "expiresAt": expires,
    }
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": CONNECTIONS_TABLE, "Item": item}}
            for item in (meta, by_room, by_connection)
        ]
    )

    entry_id = f"{int(time.time() * 1000):012x}{secrets.randbits(64):016x}"
    audit = {
        "pk": {"S": f"CONN#{connection_id}"},
        "sk": {"S": f"{at}#{entry_id}"},
        "id": {"S": entry_id},
        "kind": {"S": "connect"},
        "at": {"S": at},
        "connectionId": {"S": connection_id},
        "route": {"S": "$connect"},
        "size": {"N": "0"},
        "expiresAt": {"N": str(epoch + AUDIT_RETENTION_SECONDS)},
    }
    if user:
        audit["user"] = {"S": user}
    dynamodb.put_item(TableName=AUDIT_TABLE, Item=audit)
    return {"statusCode": 200}
