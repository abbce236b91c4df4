// The payload floor for bench/rpc.py: a C++ gRPC server that answers every unary call, on
// any method, with the bytes of one file (a GetRunResponse the daemon served). It does no
// work of its own beyond gRPC's, so its latency is what this machine's gRPC and loopback
// give for an answer of that size under the same load: the limit a server can approach.
//
//   rpc_server PAYLOAD_FILE     prints the port it listens on (127.0.0.1), serves until killed

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

namespace {

std::string payload;

// One unary call: read the request, answer with the payload (a slice over the same bytes,
// no copy), finish.
class Answer : public grpc::ServerGenericBidiReactor {
 public:
  Answer() { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request message"));
      return;
    }
    grpc::Slice slice(payload.data(), payload.size(), grpc::Slice::STATIC_SLICE);
    response_ = grpc::ByteBuffer(&slice, 1);
    StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
  }

  void OnDone() override { delete this; }

 private:
  grpc::ByteBuffer request_, response_;
};

class Service : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    return new Answer;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: rpc_server PAYLOAD_FILE\n");
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "rpc_server: cannot read %s\n", argv[1]);
    return 1;
  }
  std::stringstream bytes;
  bytes << in.rdbuf();
  payload = bytes.str();

  Service service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&service);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "rpc_server: cannot listen on 127.0.0.1\n");
    return 1;
  }
  std::cout << port << std::endl;
  server->Wait();
  return 0;
}
