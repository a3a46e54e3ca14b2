//! TODO(helper): mobileconfig renderer
