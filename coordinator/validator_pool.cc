#include "coordinator/validator_pool.h"

#include <signal.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/line_io.h"

namespace peco::coordinator {

// One validator process and the reader of its stdout.
struct ValidatorPool::Member {
  explicit Member(std::unique_ptr<Process> p)
      : process(std::move(p)), reader(process->stdout_fd(), kMaxResponseBytes) {}

  // A response is a verdict and a few paths; anything near this is not one.
  static constexpr size_t kMaxResponseBytes = size_t{1} << 20;

  std::unique_ptr<Process> process;
  LineReader reader;
  int64_t served = 0;  // requests answered
};

absl::Status ValidatorPool::Options::Validate() const {
  if (argv.empty() || argv[0].empty()) {
    return absl::InvalidArgumentError("validator pool: argv must name a program");
  }
  if (pool_size < 1) return absl::InvalidArgumentError("validator pool: pool_size must be >= 1");
  if (request_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("validator pool: request_timeout must be positive");
  }
  if (startup_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("validator pool: startup_timeout must be >= 0");
  }
  return absl::OkStatus();
}

ValidatorPool::ValidatorPool(Options options, ProcessLauncher* launcher)
    : options_(std::move(options)),
      owned_launcher_(launcher == nullptr ? std::make_unique<PosixProcessLauncher>() : nullptr),
      launcher_(launcher == nullptr ? owned_launcher_.get() : launcher) {}

ValidatorPool::~ValidatorPool() {
  std::vector<std::unique_ptr<Member>> idle;
  {
    absl::MutexLock lock(&mu_);
    idle.swap(idle_);
  }
  // Destroying a Process kills its group and reaps it.
}

std::string ValidatorPool::Name() const { return absl::StrJoin(options_.argv, " "); }

bool ValidatorPool::CanTakeLocked() const { return !idle_.empty() || live_ < options_.pool_size; }

absl::StatusOr<std::unique_ptr<ValidatorPool::Member>> ValidatorPool::Launch() {
  LaunchSpec spec;
  spec.argv = options_.argv;
  spec.env = options_.env;
  spec.stderr_path = options_.stderr_path;
  spec.writable_stdin = true;
  absl::StatusOr<std::unique_ptr<Process>> process = launcher_->Launch(spec);
  if (!process.ok()) return process.status();
  auto member = std::make_unique<Member>(*std::move(process));
  absl::MutexLock lock(&mu_);
  pids_.insert(member->process->pid());
  return member;
}

void ValidatorPool::Discard(std::unique_ptr<Member> member) {
  const pid_t pid = member->process->pid();
  member.reset();  // SIGKILL to the group, then waitpid
  absl::MutexLock lock(&mu_);
  pids_.erase(pid);
}

void ValidatorPool::Release(std::unique_ptr<Member> member) {
  absl::MutexLock lock(&mu_);
  idle_.push_back(std::move(member));
}

absl::Status ValidatorPool::Exchange(Member& member, const ValidationRequest& request,
                                     absl::Time deadline, ValidationResponse* response) {
  const std::string line = EncodeValidationRequest(request) + "\n";
  absl::Status written = WriteAllBefore(member.process->stdin_fd(), line, deadline);
  if (absl::IsDeadlineExceeded(written)) return written;
  if (!written.ok()) return absl::UnavailableError(written.message());
  absl::StatusOr<std::string> answer = member.reader.ReadLine(deadline);
  if (absl::IsDeadlineExceeded(answer.status())) return answer.status();
  if (absl::IsOutOfRange(answer.status())) return absl::UnavailableError("it exited");
  if (!answer.ok()) return absl::DataLossError(answer.status().message());
  absl::StatusOr<ValidationResponse> parsed = ParseValidationResponse(*answer);
  if (!parsed.ok()) {
    return absl::DataLossError(
        absl::StrCat("it answered '", answer->substr(0, 200), "': ", parsed.status().message()));
  }
  if (parsed->id != request.id) {
    return absl::DataLossError(
        absl::StrCat("it answered request ", parsed->id, " when asked request ", request.id));
  }
  *response = *std::move(parsed);
  return absl::OkStatus();
}

absl::StatusOr<ValidationResponse> ValidatorPool::Check(ValidationRequest request) {
  const absl::Time start = absl::Now();
  std::unique_ptr<Member> member;
  {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithDeadline(absl::Condition(this, &ValidatorPool::CanTakeLocked),
                               start + options_.request_timeout)) {
      return absl::UnavailableError(absl::StrCat(
          "cannot check the config: all ", options_.pool_size, " validator processes (", Name(),
          ") stayed busy for ", absl::FormatDuration(options_.request_timeout)));
    }
    if (!idle_.empty()) {
      member = std::move(idle_.back());
      idle_.pop_back();
    } else {
      ++live_;  // this request's slot, filled by a fresh process below
    }
    request.id = ++next_request_id_;
  }
  auto free_slot = [this] {
    absl::MutexLock lock(&mu_);
    --live_;
  };

  for (int attempt = 0;; ++attempt) {
    if (member != nullptr) {
      // Killed while idle: replace it before anything is sent.
      absl::StatusOr<std::optional<ExitStatus>> exited = member->process->Poll();
      if (!exited.ok() || exited->has_value()) {
        Discard(std::move(member));
        member = nullptr;
      }
    }
    if (member == nullptr) {
      absl::StatusOr<std::unique_ptr<Member>> launched = Launch();
      if (!launched.ok()) {
        free_slot();
        return absl::UnavailableError(
            absl::StrCat("cannot check the config: starting the validator (", Name(),
                         "): ", launched.status().message()));
      }
      member = *std::move(launched);
    }
    const pid_t pid = member->process->pid();
    const bool first = member->served == 0;
    const absl::Duration allowed =
        options_.request_timeout + (first ? options_.startup_timeout : absl::ZeroDuration());
    ValidationResponse response;
    absl::Status exchanged = Exchange(*member, request, absl::Now() + allowed, &response);
    if (exchanged.ok()) {
      ++member->served;
      Release(std::move(member));
      return response;
    }
    // A process that served before may have died before this request reached it.
    const bool retry = absl::IsUnavailable(exchanged) && !first && attempt == 0;
    Discard(std::move(member));
    member = nullptr;
    if (retry) continue;
    free_slot();
    const std::string what =
        absl::IsDeadlineExceeded(exchanged)
            ? absl::StrCat("did not answer within ", absl::FormatDuration(allowed))
            : std::string(exchanged.message());
    return absl::UnavailableError(absl::StrCat("cannot check the config: the validator (", Name(),
                                               ", pid ", pid, ") ", what,
                                               "; it was stopped and will be replaced"));
  }
}

std::vector<pid_t> ValidatorPool::PidsForTest() const {
  absl::MutexLock lock(&mu_);
  return std::vector<pid_t>(pids_.begin(), pids_.end());
}

}  // namespace peco::coordinator
