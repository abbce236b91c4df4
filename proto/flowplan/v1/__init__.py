"""The `flowplan.v1` protobuf package: messages and the WorkflowService gRPC stubs,
generated next to their .proto by proto/generate.sh. Import the modules: `from flowplan.v1
import workflow_service_pb2, workflow_service_pb2_grpc`."""
