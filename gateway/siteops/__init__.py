"""Site operations on the device: local history, work orders, inspections, scheduled
reports, KPIs and the tariff. Importing this package registers the ``siteops`` component
(config key ``siteops:``). See docs/operations.md."""

from gateway.components import register_component
from gateway.siteops.component import SPEC, SiteOpsComponent

register_component(SPEC)

__all__ = ["SiteOpsComponent"]
