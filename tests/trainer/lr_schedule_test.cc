#include "trainer/engine/lr_schedule.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

namespace peco::trainer {
namespace {

using ::testing::HasSubstr;

LrSchedule Cosine(double lr, double min_lr, int64_t warmup, int64_t total) {
  LrSchedule s;
  s.kind = "cosine";
  s.base_lr = lr;
  s.min_lr = min_lr;
  s.warmup_steps = warmup;
  s.total_steps = total;
  return s;
}

TEST(LrScheduleTest, WarmupIsLinearFromLrOverWarmupToLr) {
  const LrSchedule s = Cosine(1e-3, 1e-5, 10, 100);
  EXPECT_DOUBLE_EQ(s.At(0), 1e-3 / 10);
  for (int64_t step = 0; step < 10; ++step) {
    EXPECT_NEAR(s.At(step), 1e-3 * (step + 1) / 10.0, 1e-15) << step;
  }
  EXPECT_DOUBLE_EQ(s.At(9), 1e-3);
  // The first decay step starts at the peak.
  EXPECT_DOUBLE_EQ(s.At(10), 1e-3);
}

TEST(LrScheduleTest, CosineReachesMinLrAtTotalStepsAndStays) {
  const LrSchedule s = Cosine(2e-3, 1e-4, 20, 400);
  EXPECT_NEAR(s.At(400), 1e-4, 1e-15);
  EXPECT_NEAR(s.At(401), 1e-4, 1e-15);
  EXPECT_NEAR(s.At(100000), 1e-4, 1e-15);
  // Half way through the decay the rate is the mean of lr and min_lr.
  EXPECT_NEAR(s.At(20 + 190), (2e-3 + 1e-4) / 2, 1e-12);
  // Exact formula at an arbitrary step.
  const double progress = (123.0 - 20) / 380.0;
  EXPECT_NEAR(s.At(123), 1e-4 + 0.5 * (2e-3 - 1e-4) * (1 + std::cos(M_PI * progress)), 1e-15);
}

TEST(LrScheduleTest, CosineIsMonotoneNonIncreasingAfterWarmup) {
  for (int64_t warmup : {0, 1, 7}) {
    const LrSchedule s = Cosine(1.0, 0.01, warmup, 250);
    double previous = s.At(warmup);
    for (int64_t step = warmup + 1; step <= 300; ++step) {
      const double lr = s.At(step);
      EXPECT_LE(lr, previous) << "warmup " << warmup << " step " << step;
      EXPECT_GE(lr, 0.01 - 1e-15);
      previous = lr;
    }
  }
}

TEST(LrScheduleTest, WarmupIsStrictlyIncreasing) {
  const LrSchedule s = Cosine(0.5, 0.0, 25, 100);
  for (int64_t step = 1; step < 25; ++step) EXPECT_GT(s.At(step), s.At(step - 1)) << step;
}

TEST(LrScheduleTest, NoWarmupStartsAtLr) {
  const LrSchedule s = Cosine(3e-4, 0.0, 0, 10);
  EXPECT_DOUBLE_EQ(s.At(0), 3e-4);
  EXPECT_NEAR(s.At(10), 0.0, 1e-18);
}

TEST(LrScheduleTest, WarmupLongerThanTotalStillEndsAtMinLr) {
  const LrSchedule s = Cosine(1.0, 0.1, 10, 5);
  EXPECT_DOUBLE_EQ(s.At(9), 1.0);
  EXPECT_NEAR(s.At(11), 0.1, 1e-15);
  EXPECT_TRUE(std::isfinite(s.At(10)));
}

TEST(LrScheduleTest, ConstantStaysAfterWarmup) {
  LrSchedule s = Cosine(5e-4, 1e-6, 4, 100);
  s.kind = "constant";
  EXPECT_DOUBLE_EQ(s.At(0), 5e-4 / 4);
  EXPECT_DOUBLE_EQ(s.At(3), 5e-4);
  for (int64_t step : {4, 50, 100, 1000}) EXPECT_DOUBLE_EQ(s.At(step), 5e-4) << step;
}

TEST(LrScheduleTest, ValidateAcceptsGoodSchedules) {
  EXPECT_TRUE(Cosine(1e-3, 0, 0, 1).Validate("optim.").ok());
  EXPECT_TRUE(Cosine(1e-3, 1e-3, 10, 100).Validate("optim.").ok());
  LrSchedule c = Cosine(1e-3, 0, 0, 1);
  c.kind = "constant";
  EXPECT_TRUE(c.Validate("").ok());
}

TEST(LrScheduleTest, ValidateNamesFields) {
  struct Case {
    LrSchedule schedule;
    std::string field;
  };
  LrSchedule bad_kind = Cosine(1e-3, 0, 0, 10);
  bad_kind.kind = "linear";
  const Case cases[] = {
      {bad_kind, "optim.schedule"},
      {Cosine(0, 0, 0, 10), "optim.lr"},
      {Cosine(-1, 0, 0, 10), "optim.lr"},
      {Cosine(NAN, 0, 0, 10), "optim.lr"},
      {Cosine(1e-3, -1e-5, 0, 10), "optim.min_lr"},
      {Cosine(1e-3, 2e-3, 0, 10), "optim.min_lr"},
      {Cosine(1e-3, 0, -1, 10), "optim.warmup_steps"},
  };
  for (const Case& c : cases) {
    absl::Status status = c.schedule.Validate("optim.");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(status.message(), HasSubstr(c.field + ":")) << status;
  }
  absl::Status status = bad_kind.Validate("optim.");
  EXPECT_THAT(status.message(), HasSubstr("linear"));
}

TEST(LrScheduleTest, WarmupFromZeroIsBeitsLinspace) {
  // np.linspace(0, 1e-3, 5) then cosine from 1e-3 to 1e-5 over the remaining 15 steps.
  LrSchedule s = Cosine(1e-3, 1e-5, 5, 20);
  s.warmup_from_zero = true;
  const double expected[] = {0, 2.5e-4, 5e-4, 7.5e-4, 1e-3};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(s.At(i), expected[i], 1e-15) << i;
  EXPECT_NEAR(s.At(5), 1e-3, 1e-15);
  EXPECT_NEAR(s.At(19), 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + std::cos(M_PI * 14 / 15)), 1e-15);
}

}  // namespace
}  // namespace peco::trainer
