from hooks.base import CustomerHooks

hooks = CustomerHooks()
