#include "common/json_line.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/json_writer.h"

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

TEST(JsonLineTest, ReadsListsOfScalars) {
  std::optional<JsonFields> fields =
      ParseJsonObjectLine(R"({"sets":["a.b=1","c=[2, 3]"],"empty":[],"mixed":[1,{"x":2}]})");
  ASSERT_TRUE(fields.has_value());
  EXPECT_EQ(fields->StringList("sets"), (std::vector<std::string>{"a.b=1", "c=[2, 3]"}));
  EXPECT_EQ(fields->StringList("empty"), std::vector<std::string>{});
  EXPECT_FALSE(fields->StringList("mixed").has_value()) << "holds an object";
  EXPECT_FALSE(fields->StringList("absent").has_value());
  EXPECT_FALSE(fields->String("sets").has_value());
}

TEST(JsonLineTest, WriterTextRoundTripsExactly) {
  // Multi-line YAML with quotes, backslashes, tabs, controls and the characters YAML would
  // fold as line breaks (U+0085, U+2028, U+2029) must come back byte for byte.
  const std::string text =
      "kind: tokenizer\n  note: \"a \\ b\"\t# c\r\n\x01\x7f caf\xc3\xa9 \xc2\x85 "
      "\xe2\x80\xa8 \xe2\x80\xa9 end  \n";
  const std::vector<std::string> list = {"x=1", "", " spaced ", "quote\"d"};
  JsonWriter writer;
  writer.Add("text", text).Add("list", list);
  const std::string line = writer.str();
  EXPECT_EQ(line.find('\n'), std::string::npos);
  std::optional<JsonFields> fields = ParseJsonObjectLine(line);
  ASSERT_TRUE(fields.has_value()) << line;
  EXPECT_EQ(fields->String("text"), text);
  EXPECT_EQ(fields->StringList("list"), list);
}

TEST(JsonLineTest, DecodesEveryEscape) {
  std::optional<JsonFields> fields = ParseJsonObjectLine(
      R"({"s":"q\" b\\ s\/ \b\f\n\r\t \u00e9 \ud83d\ude00","n":-1.5e+3,"z":0,"t":true})");
  ASSERT_TRUE(fields.has_value());
  EXPECT_EQ(fields->String("s"), "q\" b\\ s/ \b\f\n\r\t \xc3\xa9 \xf0\x9f\x98\x80");
  EXPECT_DOUBLE_EQ(*fields->Number("n"), -1500);
  EXPECT_EQ(fields->Int("z"), 0);
  EXPECT_EQ(fields->Bool("t"), true);
}

TEST(JsonLineTest, RefusesMalformedJson) {
  for (const char* bad :
       {R"({"a":1,})", R"({"a" 1})", R"({a:1})", R"({"a":01})", R"({"a":.5})", R"({"a":"\x41"})",
        R"({"a":"\ud800"})", R"({"a":tru})", R"({"a":1} trailing)", R"({"a":{"b":[1,2}})",
        "{\"a\":\"raw\ttab\"}", R"({'a':1})"}) {
    EXPECT_FALSE(ParseJsonObjectLine(bad).has_value()) << bad;
  }
  EXPECT_TRUE(ParseJsonObjectLine(R"({"nested":{"deep":[{"x":[1]}]},"a":1})").has_value());
  EXPECT_TRUE(ParseJsonObjectLine("{}").has_value());
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
