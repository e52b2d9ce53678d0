// The loop options of a job, from the sections every kind's config shares: `threads`, `train:`
// and `faults:` (tasks/config_sections.h), plus how it was started (--resume, progress).
//
// Free function; thread-safe.
#ifndef PECO_TRAINER_TASKS_RUN_SETUP_H_
#define PECO_TRAINER_TASKS_RUN_SETUP_H_

#include <string>

#include "trainer/engine/fault_injection.h"
#include "trainer/engine/progress.h"
#include "trainer/engine/training_loop.h"
#include "trainer/tasks/config_sections.h"

namespace peco::trainer {

// `progress` is borrowed and must outlive the run; `config_text` is the effective config, the
// text of the run record (engine/run_record.h).
TrainingLoopOptions LoopOptionsFor(const std::string& kind, int threads, const TrainConfig& train,
                                   const FaultPlan& faults, const std::string& resume_from,
                                   ProgressSink* progress, const std::string& config_text);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_RUN_SETUP_H_
