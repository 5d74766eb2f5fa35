"""What a stock gRPC client finds on the control port with no .proto at hand:
grpcio's health checking and reflection modules from PyPI, and a Publish
built from the reflected schema alone (as grpcurl does).

    python3 discover.py HOST:PORT TOKEN CHANNEL

Prints one JSON object: the health statuses, the services reflection lists,
Publish's request fields, and the reply of the Publish it made."""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

#: Longest wait for one call.
CALL_SECONDS = 10


def main():
    address, token, channel_name = sys.argv[1:4]
    channel = grpc.insecure_channel(address)
    health = health_pb2_grpc.HealthStub(channel)
    statuses = {}
    for service in ["", "slip.v1.Control", "slip.v1.Admin"]:
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=CALL_SECONDS)
        statuses[service] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    try:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=CALL_SECONDS)
        unknown = "OK"
    except grpc.RpcError as e:
        unknown = e.code().name

    database = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(database.get_services())
    pool = descriptor_pool.DescriptorPool(database)
    control = pool.FindServiceByName("slip.v1.Control")
    publish = control.FindMethodByName("Publish")
    request_class = message_factory.GetMessageClass(publish.input_type)
    reply_class = message_factory.GetMessageClass(publish.output_type)
    request = json_format.ParseDict({"channel": channel_name, "text": "found by reflection",
                                     "idempotencyKey": "discovered-1"}, request_class())
    call = channel.unary_unary(f"/slip.v1.Control/{publish.name}",
                               request_serializer=request_class.SerializeToString,
                               response_deserializer=reply_class.FromString)
    reply = call(request, metadata=[("authorization", f"Bearer {token}")], timeout=CALL_SECONDS)
    print(json.dumps({
        "health": statuses,
        "unknownService": unknown,
        "services": services,
        "publishFields": sorted(f.name for f in publish.input_type.fields),
        "publishReply": json_format.MessageToDict(reply),
    }))


if __name__ == "__main__":
    main()
