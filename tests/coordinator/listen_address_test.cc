#include "coordinator/listen_address.h"

#include <gtest/gtest.h>

namespace peco::coordinator {
namespace {

TEST(ListenAddressTest, LoopbackAddressesAreLoopback) {
  for (const char* address : {"127.0.0.1:7450", "127.1.2.3:0", "localhost:7450", "[::1]:7450",
                              "unix:/run/peco.sock", "unix-abstract:peco"}) {
    EXPECT_TRUE(IsLoopbackListenAddress(address)) << address;
  }
}

TEST(ListenAddressTest, WildcardAndOtherHostsAreNot) {
  for (const char* address : {"0.0.0.0:7450", "[::]:7450", ":7450", "10.0.0.5:7450",
                              "coordinator.example:7450", "[2001:db8::1]:7450", "128.0.0.1:1"}) {
    EXPECT_FALSE(IsLoopbackListenAddress(address)) << address;
  }
}

}  // namespace
}  // namespace peco::coordinator
