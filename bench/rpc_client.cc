// A native closed-loop gRPC client for bench/rpc.py: N clients (threads, each on its own
// connection) call one unary method back to back, and the latency of every call is printed
// in microseconds, one line per client. A Python client costs 0.3-0.7 ms of CPU per call,
// so 8 of them in one process saturate a core and measure themselves rather than the
// server; this one costs a few microseconds and leaves the machine to the server.
//
//   rpc_client ADDRESS METHOD REQUEST_HEX CLIENTS CALLS WARMUP EXPECT_NODES
//
// REQUEST_HEX is the serialized request. EXPECT_NODES >= 0 parses every answer as a
// flowplan.v1.GetRunResponse (as a real client would) and fails unless the run has that many
// nodes; -1 skips parsing (the floor's health check). bench/rpc.py builds and runs it.

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "flowplan/v1/workflow_service.pb.h"

namespace {

std::string Unhex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "rpc_client: %s\n", message.c_str());
  std::exit(1);
}

struct Client {
  std::unique_ptr<grpc::GenericStub> stub;
  grpc::CompletionQueue queue;
};

// One call, waited for on the client's own completion queue; returns its latency in us.
int64_t Call(Client& client, const std::string& method, const std::string& request,
             int expect_nodes) {
  auto began = std::chrono::steady_clock::now();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  // Debian's gRPC 1.51 now and then fails a fresh loopback connect with a stray errno
  // (ENOENT); waiting for the channel retries it, as a long-lived client would.
  context.set_wait_for_ready(true);
  grpc::Slice slice(request);
  grpc::ByteBuffer sent(&slice, 1);
  grpc::ByteBuffer received;
  grpc::Status status;
  auto call = client.stub->PrepareUnaryCall(&context, method, sent, &client.queue);
  call->StartCall();
  call->Finish(&received, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  if (!client.queue.Next(&tag, &ok) || !ok) Fail("the completion queue broke");
  if (!status.ok()) Fail(method + ": " + status.error_message());
  if (expect_nodes >= 0) {
    grpc::Slice whole;
    if (!received.DumpToSingleSlice(&whole).ok()) Fail("cannot read the answer");
    google::protobuf::Arena arena;  // one allocation for the whole answer, as fast clients do
    auto* answer = google::protobuf::Arena::CreateMessage<flowplan::v1::GetRunResponse>(&arena);
    if (!answer->ParseFromArray(whole.begin(), static_cast<int>(whole.size()))) {
      Fail("the answer is not a GetRunResponse");
    }
    if (answer->run().nodes_size() != expect_nodes) {
      Fail("the answer has " + std::to_string(answer->run().nodes_size()) + " nodes, not " +
           std::to_string(expect_nodes));
    }
  }
  auto took = std::chrono::steady_clock::now() - began;
  return std::chrono::duration_cast<std::chrono::microseconds>(took).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    Fail("usage: rpc_client ADDRESS METHOD REQUEST_HEX CLIENTS CALLS WARMUP EXPECT_NODES");
  }
  const std::string address = argv[1], method = argv[2], request = Unhex(argv[3]);
  const int clients = std::atoi(argv[4]), calls = std::atoi(argv[5]);
  const int warmup = std::atoi(argv[6]), expect_nodes = std::atoi(argv[7]);

  std::vector<Client> pool(clients);
  for (int i = 0; i < clients; ++i) {
    grpc::ChannelArguments arguments;
    arguments.SetMaxReceiveMessageSize(-1);
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own
    pool[i].stub = std::make_unique<grpc::GenericStub>(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), arguments));
  }
  std::vector<std::vector<int64_t>> latencies(clients);
  std::atomic<int> warm{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      for (int n = 0; n < warmup; ++n) Call(pool[i], method, request, expect_nodes);
      ++warm;
      while (warm.load() < clients) std::this_thread::yield();  // measure all at once
      latencies[i].reserve(calls);
      for (int n = 0; n < calls; ++n) {
        latencies[i].push_back(Call(pool[i], method, request, expect_nodes));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (auto& mine : latencies) {
    for (size_t n = 0; n < mine.size(); ++n) std::printf(n ? " %lld" : "%lld",
                                                         static_cast<long long>(mine[n]));
    std::printf("\n");
  }
  return 0;
}
