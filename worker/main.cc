// peco-worker: one per machine. Registers with the coordinator, heartbeats, runs each assigned
// attempt's ranks as peco-train processes, relays their progress and uploads their checkpoints
// (docs/SERVICE.md, DESIGN.md section 2).
//
//   peco-worker --coordinator_data_dir ~/.local/share/peco --work_dir /var/lib/peco-worker
//   peco-worker --coordinator 10.0.0.1:7450 --token_file worker.token --work_dir DIR \
//               --host 10.0.0.7 --gpus 8 --ports 29500-29599
//
// SIGTERM or SIGINT: stop heartbeating, stop the trainers gracefully (they write a final
// checkpoint), upload what is pending within --shutdown_timeout, exit 0. Bad flags exit 2.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/build_info.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/process_launcher.h"
#include "common/stack_dump.h"
#include "common/tls_files.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "prometheus/exposer.h"
#include "worker/faulty_coordinator_client.h"
#include "worker/grpc_coordinator_client.h"
#include "worker/host_address.h"
#include "worker/worker_agent.h"
#include "worker/worker_metrics.h"

ABSL_FLAG(std::string, coordinator, "",
          "Coordinator address HOST:PORT (default: $PECO_COORDINATOR, else "
          "<coordinator_data_dir>/coordinator.addr)");
ABSL_FLAG(std::string, coordinator_data_dir, "",
          "The coordinator's data directory, for coordinator.addr and worker.token (default: "
          "$PECO_DATA_DIR)");
ABSL_FLAG(std::string, token_file, "",
          "File holding the worker token (default: <coordinator_data_dir>/worker.token)");
ABSL_FLAG(std::string, work_dir, "", "Directory for attempts, checkpoints in transit and the id");
ABSL_FLAG(std::vector<std::string>, allowed_roots, {"/usr/share/datasets"},
          "Directories trainers may read (resolved paths; the work directory is added); an empty "
          "list leaves trainers unconfined");
ABSL_FLAG(std::string, worker_id, "",
          "Id to register with (default: <work_dir>/worker.id, else assigned and stored there)");
ABSL_FLAG(std::string, host, "",
          "Address other ranks reach this machine at (default: 127.0.0.1 with a coordinator on "
          "loopback, else this machine's address on the route to the coordinator)");
ABSL_FLAG(int, cpu_slots, -1, "CPU slots offered (default: the number of cores)");
ABSL_FLAG(int, gpus, 0, "GPUs offered");
ABSL_FLAG(std::string, ports, "29500-29599", "FIRST-LAST: ports for rank 0's rendezvous store");
ABSL_FLAG(std::string, trainer, "",
          "Path of peco-train (default: next to this program, else found on PATH)");
ABSL_FLAG(std::string, listen, "127.0.0.1:0",
          "gRPC address for health checking and reflection (port 0 picks one)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:0",
          "Prometheus /metrics address (port 0 picks one; empty disables it)");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::ZeroDuration(),
          "Heartbeat period (0: the coordinator's)");
ABSL_FLAG(absl::Duration, startup_timeout, absl::Minutes(10),
          "A rank with no first step after this long is stalled");
ABSL_FLAG(absl::Duration, stall_timeout, absl::Minutes(5),
          "Least time without a step or checkpoint event before a rank is stalled");
ABSL_FLAG(double, stall_timeout_factor, 10.0,
          "A rank is stalled after this many median step intervals without progress (at least "
          "--stall_timeout)");
ABSL_FLAG(absl::Duration, stack_dump_grace, absl::Seconds(3),
          "A stalled trainer is sent SIGQUIT (it logs every thread's stack) and killed this long "
          "after");
ABSL_FLAG(absl::Duration, rpc_timeout, absl::Seconds(10), "Deadline of each control call");
ABSL_FLAG(std::string, rpc_faults, "",
          "Reliability tests only: lose calls to the coordinator, e.g. "
          "'ReportProgress:response:3,Heartbeat:request:2' (worker/faulty_coordinator_client.h; "
          "default $PECO_RPC_FAULTS)");
ABSL_FLAG(absl::Duration, transfer_timeout, absl::Minutes(30),
          "Deadline of one checkpoint upload or fetch");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(60),
          "On SIGTERM, how long trainers get to stop before SIGKILL");
ABSL_FLAG(absl::Duration, shutdown_timeout, absl::Minutes(5),
          "On SIGTERM, how long to wait in all for trainers, uploads and reports");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA certificates: connect to the coordinator over TLS and verify it against them");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain: this worker's identity for mutual TLS and, with --tls_key, "
          "TLS on its own --listen port");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name to expect in the coordinator's certificate when it differs from the host in "
          "--coordinator (e.g. connecting by IP to a certificate issued for a DNS name)");
ABSL_FLAG(absl::Duration, tick, absl::Milliseconds(200), "Period of the control loop");

namespace peco::worker {
namespace {
namespace fs = std::filesystem;

std::atomic<int> g_signal{0};

void OnSignal(int signal) { g_signal.store(signal); }

void Log(absl::string_view message) {
  const std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%d %H:%M:%E3S", absl::Now(), absl::LocalTimeZone()),
                   " peco-worker: ", message, "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
}

[[noreturn]] void UsageError(absl::string_view message) {
  std::fprintf(stderr, "peco-worker: %s\n(see peco-worker --help)\n", std::string(message).c_str());
  std::exit(2);
}

// absl exits 1 on a flag error; peco's convention for bad usage is 2, so every flag is checked
// here first. Only the names and values of flags are checked; ParseCommandLine does the rest.
void CheckFlagsOrExit(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--") && !absl::ConsumePrefix(&arg, "-")) {
      UsageError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::optional<absl::string_view> value;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    if (absl::StartsWith(arg, "help") || arg == "version" || arg == "only_check_args") continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(arg);
    bool negated = false;
    if (flag == nullptr && absl::StartsWith(arg, "no")) {
      flag = absl::FindCommandLineFlag(arg.substr(2));
      negated = flag != nullptr && flag->IsOfType<bool>();
      if (!negated) flag = nullptr;
    }
    if (flag == nullptr) UsageError(absl::StrCat("unknown flag --", arg));
    if (flag->IsOfType<bool>()) {
      if (negated && value) UsageError(absl::StrCat("--", arg, " takes no value"));
      continue;
    }
    if (!value) {
      if (i + 1 >= argc) UsageError(absl::StrCat("--", arg, ": missing value"));
      value = argv[++i];
    }
    std::string error;
    if (!flag->ParseFrom(*value, &error)) {
      UsageError(absl::StrCat("--", arg, ": ", error));
    }
  }
}

// Returns (first, last) of "FIRST-LAST".
bool ParsePorts(absl::string_view text, int* first, int* last) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '-');
  return parts.size() == 2 && absl::SimpleAtoi(parts[0], first) &&
         absl::SimpleAtoi(parts[1], last) && *first >= 1 && *first <= *last && *last <= 65535;
}

bool IsExecutable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

// peco-train next to this program (an install), in the build tree's trainer/ (a build), else
// on PATH.
std::string FindTrainer() {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  if (!error) {
    for (const fs::path& candidate :
         {self.parent_path() / "peco-train",
          self.parent_path().parent_path() / "trainer" / "peco-train"}) {
      if (IsExecutable(candidate.string())) return candidate.string();
    }
  }
  return "peco-train";
}

std::string ReadTrimmed(const std::string& path, const char* what) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) UsageError(absl::StrCat("cannot read the ", what, ": ", text.status().message()));
  std::string trimmed(absl::StripAsciiWhitespace(*text));
  if (trimmed.empty()) UsageError(absl::StrCat("the ", what, " file ", path, " is empty"));
  return trimmed;
}

int Run() {
  // Where the coordinator is and the token.
  std::string data_dir = absl::GetFlag(FLAGS_coordinator_data_dir);
  if (data_dir.empty() && std::getenv("PECO_DATA_DIR") != nullptr) {
    data_dir = std::getenv("PECO_DATA_DIR");
  }
  std::string address = absl::GetFlag(FLAGS_coordinator);
  if (address.empty() && std::getenv("PECO_COORDINATOR") != nullptr) {
    address = std::getenv("PECO_COORDINATOR");
  }
  if (address.empty()) {
    if (data_dir.empty()) {
      UsageError("--coordinator: required (or --coordinator_data_dir holding coordinator.addr)");
    }
    address = ReadTrimmed((fs::path(data_dir) / "coordinator.addr").string(),
                          "coordinator address (--coordinator_data_dir)");
  }
  std::string token_file = absl::GetFlag(FLAGS_token_file);
  if (token_file.empty()) {
    if (data_dir.empty()) {
      UsageError("--token_file: required (or --coordinator_data_dir holding worker.token)");
    }
    token_file = (fs::path(data_dir) / "worker.token").string();
  }
  const std::string token = ReadTrimmed(token_file, "worker token (--token_file)");

  WorkerAgentOptions options;
  options.work_dir = absl::GetFlag(FLAGS_work_dir);
  if (options.work_dir.empty()) UsageError("--work_dir: required");
  // Trainers start in their attempt's directory: every path handed to them is absolute.
  options.work_dir = std::filesystem::absolute(options.work_dir).lexically_normal().string();
  for (const std::string& root : absl::GetFlag(FLAGS_allowed_roots)) {
    if (root.empty()) continue;
    if (!std::filesystem::path(root).is_absolute()) {
      UsageError(absl::StrCat("--allowed_roots: '", root, "' is not an absolute path"));
    }
    options.allowed_roots.push_back(root);
  }
  options.worker_id = absl::GetFlag(FLAGS_worker_id);
  // Where other ranks reach this machine (worker/host_address.h): a remote coordinator means a
  // cluster, where a loopback host would make gangs across machines hang at the rendezvous.
  const std::string coordinator_host = HostOfTarget(address);
  options.host = absl::GetFlag(FLAGS_host);
  if (options.host.empty()) {
    if (IsLoopbackHost(coordinator_host)) {
      options.host = "127.0.0.1";
    } else {
      absl::StatusOr<std::string> routable = LocalAddressToward(coordinator_host);
      if (!routable.ok()) {
        UsageError(
            absl::StrCat("--host: not given, and this machine's address toward the "
                         "coordinator could not be found (",
                         routable.status().message(), "); give --host"));
      }
      options.host = *routable;
    }
  } else if (IsLoopbackHost(options.host) && !IsLoopbackHost(coordinator_host)) {
    Log(absl::StrCat("WARNING: --host ", options.host,
                     " is a loopback address but the "
                     "coordinator is at ",
                     coordinator_host,
                     ": ranks on other machines cannot "
                     "reach this one, and a gang spread over machines would hang at the "
                     "rendezvous. Give --host this machine's address, or leave --host out to use "
                     "the address on the route to the coordinator."));
  }
  options.gpus = absl::GetFlag(FLAGS_gpus);
  options.cpu_slots = absl::GetFlag(FLAGS_cpu_slots);
  if (options.cpu_slots < 0) {
    options.cpu_slots = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  if (!ParsePorts(absl::GetFlag(FLAGS_ports), &options.first_port, &options.last_port)) {
    UsageError(absl::StrCat("--ports: expected FIRST-LAST with 1 <= FIRST <= LAST <= 65535, got '",
                            absl::GetFlag(FLAGS_ports), "'"));
  }
  const std::string trainer =
      absl::GetFlag(FLAGS_trainer).empty() ? FindTrainer() : absl::GetFlag(FLAGS_trainer);
  options.trainer_command = {trainer};
  options.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  options.startup_timeout = absl::GetFlag(FLAGS_startup_timeout);
  options.stall_timeout_floor = absl::GetFlag(FLAGS_stall_timeout);
  options.stall_timeout_factor = absl::GetFlag(FLAGS_stall_timeout_factor);
  options.stack_dump_grace = absl::GetFlag(FLAGS_stack_dump_grace);
  options.log = Log;
  if (absl::Status valid = options.Validate(); !valid.ok()) {
    // Field names match the flags except where a flag sets two fields.
    UsageError(std::string(valid.message()));
  }
  const absl::Duration tick = absl::GetFlag(FLAGS_tick);
  if (tick <= absl::ZeroDuration()) UsageError("--tick: must be > 0");

  GrpcCoordinatorClient::Options client_options;
  client_options.token = token;
  client_options.rpc_timeout = absl::GetFlag(FLAGS_rpc_timeout);
  client_options.transfer_timeout = absl::GetFlag(FLAGS_transfer_timeout);
  if (absl::Status valid = client_options.Validate(); !valid.ok()) {
    UsageError(std::string(valid.message()));
  }
  std::string rpc_fault_plan = absl::GetFlag(FLAGS_rpc_faults);
  if (const char* env = std::getenv("PECO_RPC_FAULTS"); rpc_fault_plan.empty() && env != nullptr) {
    rpc_fault_plan = env;
  }
  absl::StatusOr<std::map<std::string, RpcFault>> rpc_faults =
      ParseRpcFaults(rpc_fault_plan, WorkerRpcMethods());
  if (!rpc_faults.ok()) UsageError(absl::StrCat("--rpc_faults: ", rpc_faults.status().message()));

  TlsFiles tls_files;
  tls_files.ca = absl::GetFlag(FLAGS_tls_ca);
  tls_files.cert = absl::GetFlag(FLAGS_tls_cert);
  tls_files.key = absl::GetFlag(FLAGS_tls_key);
  if (tls_files.has_identity() && tls_files.ca.empty()) {
    UsageError("--tls_cert: needs --tls_ca, the CA that verifies the coordinator");
  }
  absl::StatusOr<TlsMaterial> tls = LoadTlsFiles(tls_files);
  if (!tls.ok()) UsageError(std::string(tls.status().message()));

  // Health checking and reflection (no token needed).
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  std::shared_ptr<grpc::ServerCredentials> server_credentials = grpc::InsecureServerCredentials();
  if (tls_files.has_identity()) {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({tls->private_key, tls->cert_chain});
    server_credentials = grpc::SslServerCredentials(ssl);
  }
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), server_credentials, &port);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    Log(absl::StrCat("cannot listen on --listen ", absl::GetFlag(FLAGS_listen)));
    return 1;
  }
  const std::string listen = absl::GetFlag(FLAGS_listen);
  Log(absl::StrCat("gRPC health and reflection on ", listen.substr(0, listen.rfind(':')), ":",
                   port));

  WorkerMetrics metrics;
  std::unique_ptr<prometheus::Exposer> exposer;
  if (const std::string metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
      !metrics_listen.empty()) {
    try {
      exposer = std::make_unique<prometheus::Exposer>(metrics_listen);
    } catch (const std::exception& e) {
      Log(absl::StrCat("cannot serve metrics on --metrics_listen ", metrics_listen, ": ",
                       e.what()));
      return 1;
    }
    exposer->RegisterCollectable(metrics.registry());
    const std::vector<int> ports = exposer->GetListeningPorts();
    Log(absl::StrCat("metrics on http://", metrics_listen.substr(0, metrics_listen.rfind(':')), ":",
                     ports.empty() ? 0 : ports[0], "/metrics"));
  }

  // gRPC backs off reconnecting to an unreachable server up to 120 s by default: after a long
  // coordinator outage the worker would not heartbeat for that long once it is back, and the
  // coordinator would declare it lost and restart its healthy attempts. Reconnect within 1 s.
  grpc::ChannelArguments channel_args;
  channel_args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  channel_args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials =
      grpc::InsecureChannelCredentials();
  if (!tls_files.ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = tls->root_certs;
    ssl.pem_private_key = tls->private_key;
    ssl.pem_cert_chain = tls->cert_chain;
    channel_credentials = grpc::SslCredentials(ssl);
    if (const std::string name = absl::GetFlag(FLAGS_tls_server_name); !name.empty()) {
      channel_args.SetSslTargetNameOverride(name);
    }
  }
  GrpcCoordinatorClient client(
      grpc::CreateCustomChannel(address, channel_credentials, channel_args), client_options);
  FaultyCoordinatorClient faulty_client(&client, *rpc_faults);
  if (!rpc_faults->empty()) Log(absl::StrCat("RPC FAULT INJECTION armed: ", rpc_fault_plan));
  PosixProcessLauncher launcher;
  WorkerAgent agent(options,
                    rpc_faults->empty() ? static_cast<CoordinatorClient*>(&client) : &faulty_client,
                    &launcher, RealClock::Get(), &metrics);
  if (absl::Status init = agent.Init(); !init.ok()) {
    Log(std::string(init.message()));
    return 1;
  }
  Log(absl::StrCat("coordinator ", address,
                   tls_files.ca.empty()       ? " (plaintext)"
                   : tls_files.has_identity() ? " (TLS, with a client certificate)"
                                              : " (TLS)",
                   ", work_dir ", options.work_dir, ", trainer ", trainer, ", ", options.gpus,
                   " gpus, ", options.cpu_slots, " cpu slots, ports ", options.first_port, "-",
                   options.last_port));

  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::atomic<bool> stop_transfers{false};
  std::thread transfers([&] {
    while (!stop_transfers.load()) {
      if (!agent.TransferOnce()) absl::SleepFor(tick);
    }
  });
  while (g_signal.load() == 0) {
    agent.Tick();
    absl::SleepFor(tick);
  }
  const int signal = g_signal.exchange(0);
  Log(absl::StrCat("received ", signal == SIGINT ? "SIGINT" : "SIGTERM", "; shutting down"));
  agent.BeginShutdown(absl::GetFlag(FLAGS_shutdown_grace));
  const absl::Time deadline = absl::Now() + absl::GetFlag(FLAGS_shutdown_timeout);
  while (!agent.ShutdownComplete()) {
    if (absl::Now() >= deadline || g_signal.load() != 0) {
      Log(absl::StrCat("stopping without waiting further: ", agent.pending_uploads(),
                       " checkpoint uploads and ", agent.buffered_reports(), " reports not sent"));
      break;
    }
    agent.Tick();
    absl::SleepFor(tick);
  }
  stop_transfers.store(true);
  client.Shutdown();  // ends an upload in flight
  transfers.join();
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  Log("stopped");
  return 0;
}

}  // namespace
}  // namespace peco::worker

int main(int argc, char** argv) {
  peco::InstallStackDumpOnSigquit(argv[0]);  // `kill -QUIT` shows where every thread is
  absl::FlagsUsageConfig usage_config;
  usage_config.version_string = [] {
    return absl::StrCat("peco-worker ", peco::kPecoVersion, " (commit ", peco::kPecoCommit, ")\n");
  };
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "runs peco training attempts for a coordinator.\n"
      "  peco-worker --coordinator_data_dir DIR --work_dir DIR [--gpus N] [--host ADDR]\n"
      "  peco-worker --coordinator HOST:PORT --token_file FILE --work_dir DIR ...");
  peco::worker::CheckFlagsOrExit(argc, argv);
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    peco::worker::UsageError(absl::StrCat("unexpected argument '", rest[1], "'"));
  }
  return peco::worker::Run();
}
