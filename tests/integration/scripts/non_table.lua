-- a script that returns something that is neither routes nor a router
return 42
