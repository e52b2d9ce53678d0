// Checkpoint upload throughput on loopback against a plain file copy on the same disk.
//
//   peco-bench-checkpoint-upload [--megabytes 100] [--repetitions 5] [--dir /tmp]
//                                [--chunk_kib 1024] [--frame_kib 0] [--lookahead_kib 0]
//
// Builds a checkpoint of random bytes (four files and a MANIFEST), starts the coordinator's real
// services in this process on 127.0.0.1:0 over a temporary data directory, and uploads the
// checkpoint with the worker's GrpcCoordinatorClient (chunks, per-file SHA-256 verification,
// fsync and atomic commit on the coordinator side). The baseline copies the same files with
// fsync into a new directory on the same disk. The two alternate, and the medians, their ratio
// and the CPU each side used (cores: CPU seconds of this process per second of the run) are
// printed as a Markdown table.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/sha256.h"
#include "coordinator/checkpoint_file_store.h"
#include "coordinator/coordinator.h"
#include "coordinator/job_event_hub.h"
#include "coordinator/rpc_services.h"
#include "coordinator/sqlite_job_store.h"
#include "worker/grpc_coordinator_client.h"

ABSL_FLAG(int, megabytes, 100, "Checkpoint size in MiB");
ABSL_FLAG(int, repetitions, 5, "Runs of each side (alternating)");
ABSL_FLAG(int, chunk_kib, 1024, "Upload chunk size in KiB");
ABSL_FLAG(int, lookahead_kib, 0,
          "HTTP/2 stream lookahead (flow-control window) in KiB; 0 = gRPC's");
ABSL_FLAG(int, frame_kib, 0, "HTTP/2 max frame size in KiB (both ends); 0 = gRPC's 16");
ABSL_FLAG(std::string, dir, "", "Scratch directory (default: $TMPDIR or /tmp)");

namespace peco::bench {
namespace {

namespace fs = std::filesystem;

void Die(const std::string& what) {
  std::cerr << "peco-bench-checkpoint-upload: " << what << "\n";
  std::exit(1);
}

template <typename T>
T Check(absl::StatusOr<T> value, const std::string& what) {
  if (!value.ok()) Die(absl::StrCat(what, ": ", value.status().ToString()));
  return *std::move(value);
}

void Check(const absl::Status& status, const std::string& what) {
  if (!status.ok()) Die(absl::StrCat(what, ": ", status.ToString()));
}

// Writes `total` random bytes split over four files plus a trainer-style MANIFEST.
int64_t MakeCheckpoint(const std::string& dir, int64_t total) {
  fs::create_directories(dir);
  const std::vector<std::pair<std::string, double>> files = {
      {"model.pt", 0.45}, {"optimizer.pt", 0.45}, {"rng.pt", 0.05}, {"trainer_state.json", 0.05}};
  std::mt19937_64 rng(42);
  std::string manifest;
  int64_t written = 0;
  for (const auto& [name, share] : files) {
    std::string data(static_cast<size_t>(total * share), '\0');
    for (size_t i = 0; i + 8 <= data.size(); i += 8) {
      const uint64_t word = rng();
      std::memcpy(&data[i], &word, 8);
    }
    std::ofstream(dir + "/" + name, std::ios::binary).write(data.data(), data.size());
    absl::StrAppend(&manifest, Sha256Hex(data), " ", data.size(), " ", name, "\n");
    written += static_cast<int64_t>(data.size());
  }
  std::ofstream(dir + "/MANIFEST") << manifest;
  return written;
}

// The baseline: copy every file with fsync, then fsync the directory.
void CopyWithFsync(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  std::vector<char> buffer(1 << 20);
  for (const fs::directory_entry& entry : fs::directory_iterator(from)) {
    const std::string target = to + "/" + entry.path().filename().string();
    int in = ::open(entry.path().c_str(), O_RDONLY);
    int out = ::open(target.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0) Die("copy: cannot open " + target);
    ssize_t n;
    while ((n = ::read(in, buffer.data(), buffer.size())) > 0) {
      if (::write(out, buffer.data(), static_cast<size_t>(n)) != n) Die("copy: short write");
    }
    ::fsync(out);
    ::close(in);
    ::close(out);
  }
  int d = ::open(to.c_str(), O_RDONLY | O_DIRECTORY);
  ::fsync(d);
  ::close(d);
}

// User + system CPU of this process (client, services and gRPC's threads), in seconds.
double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

int Run() {
  std::string scratch = absl::GetFlag(FLAGS_dir);
  if (scratch.empty()) scratch = std::getenv("TMPDIR") != nullptr ? std::getenv("TMPDIR") : "/tmp";
  std::string pattern = scratch + "/peco-bench-upload-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) Die("cannot create a scratch directory in " + scratch);
  const std::string root = pattern;
  const int64_t bytes =
      MakeCheckpoint(root + "/source", int64_t{absl::GetFlag(FLAGS_megabytes)} << 20);

  // The coordinator's real services over a fresh data directory.
  coordinator::SqliteJobStore::Options store_options;
  store_options.path = root + "/state.db";
  auto store = Check(coordinator::SqliteJobStore::Open(store_options), "opening the store");
  coordinator::CheckpointFileStore::Options file_options;
  file_options.data_dir = root;
  auto files = Check(coordinator::CheckpointFileStore::Open(file_options), "opening files");
  coordinator::CoordinatorOptions options;
  options.keep_checkpoints = 2;
  coordinator::JobEventHub events;
  coordinator::Coordinator core(options, store.get(), files.get(), /*validator=*/nullptr,
                                RealClock::Get(), &events, /*metrics=*/nullptr);
  Check(core.Recover(), "recovering");
  coordinator::TokenRegistry tokens(coordinator::TokenRegistry::Options{
      "bench-user-token-0123456789", "bench-worker-token-0123456789", "", RealClock::Get()});
  coordinator::JobLogStoreOptions log_options;
  log_options.dir = root + "/logs";
  auto logs = Check(coordinator::JobLogStore::Open(log_options), "opening the log store");
  coordinator::JobServiceImpl job_service(&core, &events, &tokens, logs.get());
  coordinator::WorkerServiceImpl worker_service(&core, &tokens, logs.get());
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(8 << 20);
  if (absl::GetFlag(FLAGS_frame_kib) > 0) {
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, absl::GetFlag(FLAGS_frame_kib) << 10);
  }
  if (absl::GetFlag(FLAGS_lookahead_kib) > 0) {
    builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                               absl::GetFlag(FLAGS_lookahead_kib) << 10);
  }
  builder.RegisterService(&job_service);
  builder.RegisterService(&worker_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) Die("cannot start the services");

  // One worker runs one job, so uploads for its attempt are accepted.
  v1::RegisterRequest register_request;
  register_request.mutable_worker()->set_id("bench-worker");
  register_request.mutable_worker()->mutable_devices()->set_cpu_slots(1);
  register_request.mutable_worker()->mutable_ports()->set_first(29500);
  register_request.mutable_worker()->mutable_ports()->set_last(29500);
  Check(core.Register(register_request), "registering");
  v1::SubmitJobRequest submit;
  submit.mutable_spec()->set_kind(v1::JOB_KIND_TOKENIZER);
  submit.mutable_spec()->set_config_yaml("kind: tokenizer\n");
  const std::string job_id = Check(core.SubmitJob(submit), "submitting").job().id();
  v1::HeartbeatRequest beat;
  beat.set_worker_id("bench-worker");
  v1::RunningRanks* running = beat.add_running();
  running->set_job_id(job_id);
  running->set_attempt(1);
  running->add_ranks(0);
  Check(core.Heartbeat(beat), "heartbeating");

  worker::GrpcCoordinatorClient::Options client_options;
  client_options.token = "bench-worker-token-0123456789";
  client_options.chunk_bytes = int64_t{absl::GetFlag(FLAGS_chunk_kib)} << 10;
  grpc::ChannelArguments channel_args;
  if (absl::GetFlag(FLAGS_frame_kib) > 0) {
    channel_args.SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, absl::GetFlag(FLAGS_frame_kib) << 10);
  }
  if (absl::GetFlag(FLAGS_lookahead_kib) > 0) {
    channel_args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, absl::GetFlag(FLAGS_lookahead_kib)
                                                                   << 10);
  }
  worker::GrpcCoordinatorClient client(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                grpc::InsecureChannelCredentials(), channel_args),
      client_options);

  std::vector<double> upload_mbps, copy_mbps, upload_cores, copy_cores;
  const double megabytes = static_cast<double>(bytes) / (1 << 20);
  for (int rep = 0; rep < absl::GetFlag(FLAGS_repetitions); ++rep) {
    auto upload = [&] {
      v1::CheckpointHeader header;
      header.set_job_id(job_id);
      header.set_attempt(1);
      header.set_step(rep + 1);
      const double cpu = CpuSeconds();
      const absl::Time start = absl::Now();
      Check(client.UploadCheckpoint(header, root + "/source"), "uploading");
      const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
      upload_mbps.push_back(megabytes / seconds);
      upload_cores.push_back((CpuSeconds() - cpu) / seconds);
    };
    auto copy = [&] {
      const std::string dest = absl::StrCat(root, "/copy-", rep);
      const double cpu = CpuSeconds();
      const absl::Time start = absl::Now();
      CopyWithFsync(root + "/source", dest);
      const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
      copy_mbps.push_back(megabytes / seconds);
      copy_cores.push_back((CpuSeconds() - cpu) / seconds);
      fs::remove_all(dest);
    };
    // Alternating which goes first, so both see the same page-cache and writeback state.
    if (rep % 2 == 0) {
      upload();
      copy();
    } else {
      copy();
      upload();
    }
  }
  server->Shutdown();
  fs::remove_all(root);

  const double upload = Median(upload_mbps), baseline = Median(copy_mbps);
  std::cout << "| case | peco | baseline | ratio | peco CPU | baseline CPU |\n"
               "|---|---|---|---|---|---|\n";
  std::cout << absl::StrFormat(
      "| checkpoint upload, %.0f MiB on loopback (median of %d) | %.1f MB/s | %.1f MB/s (cp + "
      "fsync) | %.2fx | %.2f cores | %.2f cores |\n",
      megabytes, static_cast<int>(upload_mbps.size()), upload, baseline, upload / baseline,
      Median(upload_cores), Median(copy_cores));
  return 0;
}

}  // namespace
}  // namespace peco::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return peco::bench::Run();
}
