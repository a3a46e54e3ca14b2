//! TODO(helper): mta_sts renderer
