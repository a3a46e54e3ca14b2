//! TODO(helper): autodiscover renderer
