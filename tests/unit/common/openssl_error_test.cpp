#include "common/openssl_error.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/err.h>

namespace coapgw {
namespace {

TEST(OpenSslError, AddsTheNewestErrorAndClearsTheQueue) {
  ERR_clear_error();
  BIO* bio = BIO_new_file("/nonexistent/coapgw-openssl-error-test", "r");
  ASSERT_EQ(bio, nullptr);
  ASSERT_NE(ERR_peek_last_error(), 0u);
  const std::string text = openssl_error("open CA");
  EXPECT_TRUE(text.starts_with("open CA: error:")) << text;
  EXPECT_EQ(ERR_peek_error(), 0u);  // cleared
}

TEST(OpenSslError, EmptyQueueGivesWhatAlone) {
  ERR_clear_error();
  EXPECT_EQ(openssl_error("dtls: context"), "dtls: context");
}

}  // namespace
}  // namespace coapgw
