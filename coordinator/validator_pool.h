// ValidatorPool: a few long-lived `peco-train validate --serve` processes that check submitted
// job configs (common/validation_protocol.h), so a submit costs one request on a pipe instead of
// a LibTorch start-up (~1 s of CPU).
//
// NOTE [validator pool]
//  - Processes start lazily, on the first request that finds no idle one, up to pool_size. Each
//    serves one request at a time; a request that finds all of them busy waits for one (at most
//    request_timeout).
//  - A process that crashes, writes anything but the response to the request (garbage, another
//    id, an over-long line) or does not answer within request_timeout (plus startup_timeout for
//    its first request) is killed, and the request returns Unavailable naming the validator: a
//    failure of the check is never a verdict on the config, and never a hang. The next request
//    starts a fresh process.
//  - A process found dead when a request picks it (killed while idle) is replaced before the
//    request is sent; one that dies without answering a request that was not its first is
//    retried once on a fresh process, since it may have died before the request reached it.
//
// Thread-safety: every method is thread-safe. Processes are launched and killed without the
// pool's lock held.
//
// Usage:
//   ValidatorPool pool(options);
//   ASSIGN_OR_RETURN(ValidationResponse verdict, pool.Check(request));
//   if (!verdict.status.ok()) ... the config is invalid ...
#ifndef PECO_COORDINATOR_VALIDATOR_POOL_H_
#define PECO_COORDINATOR_VALIDATOR_POOL_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/process_launcher.h"
#include "common/validation_protocol.h"

namespace peco::coordinator {

class ValidatorPool {
 public:
  struct Options {
    // The program and arguments of one validator process.
    std::vector<std::string> argv = {"peco-train", "validate", "--serve"};
    // Extra environment ("NAME=value"). Validation runs no tensor code: one OpenMP thread,
    // passive waits (which also keeps peco-train from re-executing itself for OpenMP).
    std::vector<std::string> env = {"OMP_WAIT_POLICY=PASSIVE", "OMP_NUM_THREADS=1"};
    // Where the processes' stderr goes (appended); empty inherits the coordinator's.
    std::string stderr_path = "/dev/null";
    // How many processes may run at once.
    int pool_size = 2;
    // How long one request may take, including the wait for an idle process.
    absl::Duration request_timeout = absl::Seconds(10);
    // Extra time granted to the first request of a fresh process (its start-up).
    absl::Duration startup_timeout = absl::Seconds(60);

    // Returns InvalidArgument naming the first bad field.
    absl::Status Validate() const;
  };

  // `options` must be valid. `launcher` is borrowed and must outlive the pool; null uses a
  // PosixProcessLauncher.
  explicit ValidatorPool(Options options, ProcessLauncher* launcher = nullptr);
  ValidatorPool(const ValidatorPool&) = delete;
  ValidatorPool& operator=(const ValidatorPool&) = delete;
  // Kills the idle processes. No Check() may be running.
  ~ValidatorPool();

  // Returns one validator's answer to `request` (its id is replaced by the pool's own). The
  // answer's status is the verdict on the config. Errors: Unavailable naming the validator
  // when none could give an answer (see NOTE [validator pool]).
  absl::StatusOr<ValidationResponse> Check(ValidationRequest request);

  // Returns the pids of the running validator processes.
  std::vector<pid_t> PidsForTest() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Member;

  // One exchange with `member`. DeadlineExceeded on a timeout, Unavailable when the process
  // went away (end of file, broken pipe), DataLoss for an answer that is not the response to
  // this request.
  absl::Status Exchange(Member& member, const ValidationRequest& request, absl::Time deadline,
                        ValidationResponse* response);
  absl::StatusOr<std::unique_ptr<Member>> Launch();
  // Kills and reaps `member` (without the lock) and frees its slot.
  void Discard(std::unique_ptr<Member> member) ABSL_LOCKS_EXCLUDED(mu_);
  // Returns a member to the idle list.
  void Release(std::unique_ptr<Member> member) ABSL_LOCKS_EXCLUDED(mu_);
  bool CanTakeLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string Name() const;

  const Options options_;
  std::unique_ptr<ProcessLauncher> owned_launcher_;
  ProcessLauncher* const launcher_;

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Member>> idle_ ABSL_GUARDED_BY(mu_);
  // Processes running or being started (idle, busy or starting): at most pool_size.
  int live_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_request_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<pid_t> pids_ ABSL_GUARDED_BY(mu_);
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_VALIDATOR_POOL_H_
