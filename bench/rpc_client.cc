// A native closed-loop gRPC client for bench/rpc.py: N clients (threads, each on its own
// connection to each server) call one unary method back to back. A Python client costs
// 0.3-0.7 ms of CPU per call, so 8 of them in one process saturate a core and measure
// themselves rather than the server; this one costs a few microseconds and leaves the
// machine to the server.
//
//   rpc_client ADDRESSES METHOD REQUEST_HEX CLIENTS CALLS WARMUP EXPECT_NODES [TURNS [WATCH]]
//
// ADDRESSES is one server or several, separated by commas: the clients then call them in
// TURNS turns (default 1) of CALLS/TURNS calls each, all clients on the same server at once,
// the order rotating by one each turn, on connections opened and warmed up (WARMUP calls on
// each) before the first turn, so that the machine's weather falls on all servers alike.
// Output: a line per client and turn, "SERVER TURN us us ...", SERVER the address's index.
// WATCH, "PATH@SERVER", reads the schedstat file PATH (of the server's event loop thread)
// as each turn of that server begins and ends, and prints "schedstat RAN_NS WAITED_NS", the
// sums over its turns.
//
// REQUEST_HEX is the serialized request. EXPECT_NODES >= 0 parses every answer as a
// flowplan.v1.GetRunResponse (as a real client would) and fails unless the run has that many
// nodes; -1 skips parsing (the floor's health check). bench/rpc.py builds and runs it.

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
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

// All clients wait here between turns; the last to arrive runs `between` first.
class Barrier {
 public:
  Barrier(int count, std::function<void()> between) : count_(count), between_(between) {}
  void Wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const int generation = generation_;
    if (++arrived_ == count_) {
      between_();
      arrived_ = 0;
      ++generation_;
      done_.notify_all();
      return;
    }
    done_.wait(lock, [&] { return generation != generation_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  const int count_;
  std::function<void()> between_;
  int arrived_ = 0, generation_ = 0;
};

std::vector<std::string> Split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  for (std::string part; std::getline(stream, part, separator);) parts.push_back(part);
  return parts;
}

// (ran ns, waited ns) from a schedstat file; zeros when it cannot be read.
std::pair<long long, long long> ReadSchedstat(const std::string& path) {
  std::ifstream file(path);
  long long ran = 0, waited = 0;
  file >> ran >> waited;
  return {ran, waited};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 8 || argc > 10) {
    Fail("usage: rpc_client ADDRESSES METHOD REQUEST_HEX CLIENTS CALLS WARMUP EXPECT_NODES"
         " [TURNS [PATH@SERVER]]");
  }
  const std::vector<std::string> addresses = Split(argv[1], ',');
  const std::string method = argv[2], request = Unhex(argv[3]);
  const int clients = std::atoi(argv[4]), calls = std::atoi(argv[5]);
  const int warmup = std::atoi(argv[6]), expect_nodes = std::atoi(argv[7]);
  const int turns = argc > 8 ? std::atoi(argv[8]) : 1;
  const int servers = static_cast<int>(addresses.size());
  const int per_turn = std::max(1, calls / turns);
  std::string watch_path;
  int watched = -1;
  if (argc > 9) {
    const std::string watch = argv[9];
    const size_t at = watch.rfind('@');
    if (at == std::string::npos) Fail("WATCH is PATH@SERVER");
    watch_path = watch.substr(0, at);
    watched = std::atoi(watch.substr(at + 1).c_str());
  }

  std::vector<std::vector<Client>> pool(clients);  // [client][server]
  for (int i = 0; i < clients; ++i) {
    pool[i] = std::vector<Client>(servers);
    for (int k = 0; k < servers; ++k) {
      grpc::ChannelArguments arguments;
      arguments.SetMaxReceiveMessageSize(-1);
      arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own
      pool[i][k].stub = std::make_unique<grpc::GenericStub>(grpc::CreateCustomChannel(
          addresses[k], grpc::InsecureChannelCredentials(), arguments));
    }
  }
  // The server of each step: turn t begins with server t % servers.
  std::vector<int> order;
  for (int t = 0; t < turns; ++t) {
    for (int j = 0; j < servers; ++j) order.push_back((t + j) % servers);
  }
  long long ran = 0, waited = 0;
  size_t step = 0;  // the step about to begin, advanced by the barrier's last arrival
  std::pair<long long, long long> began{0, 0};
  Barrier barrier(clients, [&] {
    if (step > 0 && order[step - 1] == watched) {
      auto now = ReadSchedstat(watch_path);
      ran += now.first - began.first;
      waited += now.second - began.second;
    }
    if (step < order.size() && order[step] == watched) began = ReadSchedstat(watch_path);
    ++step;
  });
  // latencies[client][step]
  std::vector<std::vector<std::vector<int64_t>>> latencies(
      clients, std::vector<std::vector<int64_t>>(order.size()));
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < servers; ++k) {
        for (int n = 0; n < warmup; ++n) Call(pool[i][k], method, request, expect_nodes);
      }
      for (size_t s = 0; s < order.size(); ++s) {
        barrier.Wait();  // all clients on the same server at once
        latencies[i][s].reserve(per_turn);
        for (int n = 0; n < per_turn; ++n) {
          latencies[i][s].push_back(Call(pool[i][order[s]], method, request, expect_nodes));
        }
      }
      barrier.Wait();
    });
  }
  for (auto& thread : threads) thread.join();
  for (int i = 0; i < clients; ++i) {
    for (size_t s = 0; s < order.size(); ++s) {
      std::printf("%d %zu", order[s], s / servers);
      for (int64_t us : latencies[i][s]) std::printf(" %lld", static_cast<long long>(us));
      std::printf("\n");
    }
  }
  if (watched >= 0) std::printf("schedstat %lld %lld\n", ran, waited);
  return 0;
}
