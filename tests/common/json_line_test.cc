#include "common/json_line.h"

#include <gtest/gtest.h>

namespace peco {
namespace {

TEST(JsonLineTest, ReadsTopLevelScalarsWithTypes) {
  std::optional<JsonFields> fields = ParseJsonObjectLine(
      R"(  {"event":"step","step":12,"loss":0.25,"final":true,"nested":{"a":1},"gone":null} )");
  ASSERT_TRUE(fields.has_value());
  EXPECT_EQ(fields->String("event"), "step");
  EXPECT_EQ(fields->Int("step"), 12);
  EXPECT_DOUBLE_EQ(*fields->Number("loss"), 0.25);
  EXPECT_EQ(fields->Bool("final"), true);
  EXPECT_FALSE(fields->String("nested").has_value());
  EXPECT_FALSE(fields->String("gone").has_value());
  EXPECT_FALSE(fields->Int("loss").has_value()) << "0.25 is not an integer";
  EXPECT_FALSE(fields->Number("event").has_value());
}

TEST(JsonLineTest, RefusesWhatIsNotAnObject) {
  EXPECT_FALSE(ParseJsonObjectLine("").has_value());
  EXPECT_FALSE(ParseJsonObjectLine("step: 3").has_value());
  EXPECT_FALSE(ParseJsonObjectLine("[1, 2]").has_value());
  EXPECT_FALSE(ParseJsonObjectLine("{\"unterminated\": ").has_value());
  EXPECT_FALSE(ParseJsonObjectLine("{\"a\": [1, }").has_value());
}

}  // namespace
}  // namespace peco
